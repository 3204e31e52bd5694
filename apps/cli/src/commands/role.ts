import { type Command, resolveConversation, UsageError, userIds } from '../context.js';

/** `parley role <conversation> <username> admin|member`: an admin sets a user's role. */
export const role: Command = {
  summary: 'make a user of a group an admin or a member (admins only)',
  usage: '<conversation> <username> admin|member',
  details: [
    'Admins add and remove other users and set roles; the creator of a group is its first admin.',
    'The last admin cannot step down while others remain. A direct conversation has no roles',
    'to set. Roles are visible to the server (like the member list).',
  ],
  examples: [
    'parley --profile ana role 3f2a ben admin',
    'parley --profile ana role 3f2a ben member',
  ],
  async run({ args, client, print }) {
    const [prefix, username, wanted, ...rest] = args;
    const value = wanted?.toLowerCase();
    if (
      prefix === undefined ||
      username === undefined ||
      rest.length > 0 ||
      (value !== 'admin' && value !== 'member')
    )
      throw new UsageError('usage: parley role <conversation> <username> admin|member');
    const parley = await client();
    await parley.connect();
    const conversation = resolveConversation(parley, prefix);
    const [userId] = await userIds(parley, [username]);
    if (userId === undefined)
      throw new UsageError('usage: parley role <conversation> <username> admin|member');
    await conversation.setRole(userId, value === 'admin' ? 'ADMIN' : 'MEMBER');
    print(
      `${username} is now ${value === 'admin' ? 'an admin' : 'a member'} of ${conversation.id}`,
      {
        conversationId: conversation.id,
        userId,
        username,
        role: value === 'admin' ? 'ADMIN' : 'MEMBER',
      },
    );
    return undefined;
  },
};
