import { type Command, resolveConversation, UsageError } from '../context.js';
import { formatMessage, formatOwn } from '../format.js';

/** `parley history <conversation>`: the messages this device has decrypted, in order. */
export const history: Command = {
  summary: 'show the messages of a conversation (kept encrypted on this device)',
  usage: '<conversation>',
  examples: ['parley --profile ben history 3f2a', 'parley --profile ben --json history 3f2a'],
  async run({ args, client, print, notice }) {
    const [prefix, ...rest] = args;
    if (prefix === undefined || rest.length > 0)
      throw new UsageError('history takes one conversation: parley history <conversation>');
    const parley = await client();
    await parley.connect();
    const conversation = resolveConversation(parley, prefix);
    const messages = conversation.history();
    const names = await parley.usernames(
      messages.flatMap((message) => (message.senderUserId === null ? [] : [message.senderUserId])),
    );
    for (const message of messages)
      print(formatMessage(message, names), { ...message, sentAt: message.sentAt.toISOString() });
    await conversation.markRead();
    for (const pending of conversation.outbox())
      print(
        `${formatOwn(pending.state === 'failed' ? 'failed' : 'pending', pending.text)}${pending.error === null ? '' : ` (not sent: ${pending.error.message})`}`,
        {
          outbox: pending.state,
          id: pending.id,
          text: pending.text,
          error: pending.error?.message ?? null,
        },
      );
    if (conversation.status !== 'active')
      notice(
        `this device ${conversation.status === 'removed' ? 'was removed from' : 'left'} this conversation; no newer messages`,
        { status: conversation.status },
      );
    return undefined;
  },
};
