import { type Command, resolveConversation, UsageError } from '../context.js';

/** `parley send <conversation> <text...>`: sends one message. */
export const send: Command = {
  summary: 'send an encrypted message',
  usage: '<conversation> <text...>',
  async run({ args, client, print }) {
    const [prefix, ...words] = args;
    if (prefix === undefined || words.length === 0)
      throw new UsageError('send needs a conversation and text');
    const parley = await client();
    await parley.connect();
    const conversation = parley.conversation(resolveConversation(parley, prefix));
    const { seq } = await conversation.send(words.join(' '));
    print(`sent (#${seq})`, { conversationId: conversation.id, seq });
    await parley.close();
  },
};
