import { type Command, resolveConversation, UsageError } from '../context.js';
import { formatMessage } from '../format.js';

/** `parley history <conversation>`: the messages this device has decrypted, in order. */
export const history: Command = {
  summary: 'show the messages of a conversation (kept encrypted on this device)',
  usage: '<conversation>',
  async run({ args, client, print }) {
    const [prefix] = args;
    if (prefix === undefined) throw new UsageError('history needs a conversation');
    const parley = await client();
    await parley.connect();
    const conversation = parley.conversation(resolveConversation(parley, prefix));
    const messages = conversation.history();
    const names = await parley.usernames(
      messages.flatMap((message) => (message.senderUserId === null ? [] : [message.senderUserId])),
    );
    for (const message of messages)
      print(formatMessage(message, names), { ...message, sentAt: message.sentAt.toISOString() });
    await parley.close();
  },
};
