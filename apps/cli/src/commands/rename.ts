import { type Command, resolveConversation, UsageError } from '../context.js';

/** `parley rename <conversation> <name>`: the conversation's encrypted name. */
export const rename: Command = {
  summary: "set a conversation's name (encrypted: only its members can read it)",
  usage: '<conversation> <name>',
  details: [
    'The name travels inside MLS like a message; the server never sees it. Every member, and',
    'whoever is added later, sees the newest one. An empty name ("") clears it.',
  ],
  examples: ['parley --profile ana rename 3f2a "Trip to Lyon"'],
  async run({ args, client, print }) {
    const [prefix, name, ...rest] = args;
    if (prefix === undefined || name === undefined || rest.length > 0)
      throw new UsageError(
        'rename takes a conversation and one name (quote it): parley rename <conversation> "<name>"',
      );
    const parley = await client();
    await parley.connect();
    const conversation = resolveConversation(parley, prefix);
    const { seq } = await conversation.setMetadata({ name: name === '' ? null : name });
    print(
      name === ''
        ? `cleared the name of ${conversation.id}`
        : `renamed ${conversation.id} to ${name}`,
      {
        conversationId: conversation.id,
        name: name === '' ? null : name,
        seq,
      },
    );
    return undefined;
  },
};
