import { type Command, resolveConversation, UsageError } from '../context.js';

/** `parley send <conversation> <text...>`: sends one message. */
export const send: Command = {
  summary: 'send an encrypted message',
  usage: '<conversation> <text...>',
  details: [
    'Ends once the server has the message. If the server becomes unreachable meanwhile, the',
    'message stays pending in the profile and goes out the next time the profile connects.',
  ],
  examples: [
    'parley --profile ana send 3f2a hello ben',
    "parley --profile ana send 3f2a 'hi -- all'",
  ],
  async run({ args, client, print }) {
    const [prefix, ...words] = args;
    if (prefix === undefined || words.length === 0)
      throw new UsageError('send needs a conversation and text');
    const parley = await client();
    await parley.connect();
    const conversation = resolveConversation(parley, prefix);
    const { seq } = await conversation.send(words.join(' '));
    print(`sent (#${seq})`, { conversationId: conversation.id, seq });
    return undefined;
  },
};
