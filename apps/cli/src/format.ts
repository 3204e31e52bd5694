import type { ReceivedMessage } from '@parley/client';

// The time column is 10 characters wide whatever it holds, so that a pending line can be
// rewritten in place once it is sent.
const clock = (date: Date) => `[${date.toISOString().slice(11, 19)}]`;

/** `[time] name: text` for people. */
export function formatMessage(message: ReceivedMessage, names: Map<string, string | null>): string {
  const who = message.own
    ? 'me'
    : message.senderUserId === null
      ? message.senderDeviceId
      : (names.get(message.senderUserId) ?? message.senderUserId.slice(0, 8));
  const text = message.type === 'text' ? (message.text ?? '') : `[${message.type} message]`;
  return `${clock(message.sentAt)} ${who}: ${text}`;
}

/** An own line: `[pending ] me: …`, `[failed  ] me: …`, or `[time] me: …` once sent. */
export function formatOwn(state: 'pending' | 'failed' | Date, text: string): string {
  const column =
    state === 'pending' ? '[pending ]' : state === 'failed' ? '[failed  ]' : clock(state);
  return `${column} me: ${text}`;
}
