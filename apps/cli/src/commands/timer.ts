import { type Command, resolveConversation, UsageError } from '../context.js';
import { formatTimer, parseTimer } from '../duration.js';

/** `parley timer <conversation> [30s|5m|1h|off]`: the conversation's disappearing messages. */
export const timer: Command = {
  summary: 'make messages disappear after 5s to 24h (or off); without a duration, show it',
  usage: '<conversation> [30s|5m|1h|<seconds>|off]',
  details: [
    'Every message sent after the change disappears that long after the server stored it: the',
    'server deletes it, and every member device deletes it from its history. Any member may set',
    'it; members see who did (the change is encrypted and signed like a message). A recipient',
    'can still copy what it has read before it disappears.',
  ],
  examples: [
    'parley --profile ana timer 3f2a 30s',
    'parley --profile ana timer 3f2a 1h',
    'parley --profile ana timer 3f2a off',
    'parley --profile ana timer 3f2a',
  ],
  async run({ args, client, print }) {
    const [prefix, value, ...rest] = args;
    if (prefix === undefined || rest.length > 0)
      throw new UsageError(
        'timer takes a conversation and a duration: parley timer <conversation> 30s|5m|1h|off',
      );
    // Checked before anything connects: a wrong duration is the typist's, not the network's.
    const seconds = value === undefined ? null : parseTimer(value);
    const parley = await client();
    await parley.connect();
    const conversation = resolveConversation(parley, prefix);
    if (seconds === null) {
      const current = conversation.messageTimerSeconds;
      print(
        current === 0
          ? `messages in ${conversation.id} do not disappear`
          : `messages in ${conversation.id} disappear after ${formatTimer(current)}`,
        {
          conversationId: conversation.id,
          seconds: current,
          authenticated: conversation.messageTimerAuthenticated,
        },
      );
      return undefined;
    }
    const { seq } = await conversation.setMessageTimer(seconds);
    print(
      seconds === 0
        ? `disappearing messages are off in ${conversation.id}`
        : `messages in ${conversation.id} now disappear after ${formatTimer(seconds)}`,
      { conversationId: conversation.id, seconds, seq },
    );
    return undefined;
  },
};
