import type { ReceivedMessage } from '@parley/client';

/** `[time] name: text` for people. */
export function formatMessage(message: ReceivedMessage, names: Map<string, string | null>): string {
  const who = message.own
    ? 'me'
    : message.senderUserId === null
      ? message.senderDeviceId
      : (names.get(message.senderUserId) ?? message.senderUserId.slice(0, 8));
  const time = message.sentAt.toISOString().slice(11, 19);
  const text = message.type === 'text' ? (message.text ?? '') : `[${message.type} message]`;
  return `[${time}] ${who}: ${text}`;
}
