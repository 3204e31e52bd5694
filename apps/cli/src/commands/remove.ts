import { type Command, resolveConversation, UsageError, userIds } from '../context.js';

/** `parley remove <conversation> <username...>`: removes users from a group. */
export const remove: Command = {
  summary: 'remove users (every device of each) from a conversation',
  usage: '<conversation> <username...>',
  examples: ['parley --profile ana remove 3f2a ben'],
  async run({ args, client, print }) {
    const [prefix, ...usernames] = args;
    if (prefix === undefined || usernames.length === 0)
      throw new UsageError('remove needs a conversation and at least one username');
    const parley = await client();
    await parley.connect();
    const conversation = resolveConversation(parley, prefix);
    await conversation.removeUsers(await userIds(parley, usernames));
    print(`removed ${usernames.join(', ')}`, {
      conversationId: conversation.id,
      removed: usernames,
    });
    return undefined;
  },
};
