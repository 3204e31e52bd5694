import type { ReceivedMessage } from '@parley/client';
import { formatTimer } from './duration.js';

// The time column is 10 characters wide whatever it holds, so that a pending line can be
// rewritten in place once it is sent.
const clock = (date: Date) => `[${date.toISOString().slice(11, 19)}]`;

/** Who sent a message, for people: `me`, a username, or the start of an id. */
export function senderName(message: ReceivedMessage, names: Map<string, string | null>): string {
  return message.own
    ? 'me'
    : message.senderUserId === null
      ? message.senderDeviceId
      : (names.get(message.senderUserId) ?? message.senderUserId.slice(0, 8));
}

/** `[time] name: text` for people; a timer change as `[time] ben set disappearing messages to 30s`. */
export function formatMessage(message: ReceivedMessage, names: Map<string, string | null>): string {
  const who = senderName(message, names);
  if (message.type === 'timer') {
    const seconds = message.timerSeconds ?? 0;
    return `${clock(message.sentAt)} ${who === 'me' ? 'you' : who} ${seconds === 0 ? 'turned disappearing messages off' : `set disappearing messages to ${formatTimer(seconds)}`}`;
  }
  const text = message.type === 'text' ? (message.text ?? '') : `[${message.type} message]`;
  return `${clock(message.sentAt)} ${who}: ${text}`;
}

/** `(ben's message of 10:01:02 disappeared)`: a line shown earlier that the timer removed. */
export function formatDisappeared(who: string, sentAt: Date): string {
  return `(${who === 'me' ? 'your' : `${who}'s`} message of ${sentAt.toISOString().slice(11, 19)} disappeared)`;
}

/** An own line: `[pending ] me: …`, `[failed  ] me: …`, or `[time] me: …` once sent. */
export function formatOwn(state: 'pending' | 'failed' | Date, text: string): string {
  const column =
    state === 'pending' ? '[pending ]' : state === 'failed' ? '[failed  ]' : clock(state);
  return `${column} me: ${text}`;
}
