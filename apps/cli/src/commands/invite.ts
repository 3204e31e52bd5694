import { type Command, resolveConversation, UsageError, userIds } from '../context.js';

/** `parley invite <conversation> <username...>`: adds users to a group. */
export const invite: Command = {
  summary: 'add users (every device of each) to a conversation',
  usage: '<conversation> <username> [username...]',
  async run({ args, client, print, progress }) {
    const [prefix, ...usernames] = args;
    if (prefix === undefined || usernames.length === 0)
      throw new UsageError('invite needs a conversation and users');
    const parley = await client();
    await parley.connect();
    const conversation = parley.conversation(resolveConversation(parley, prefix));
    await conversation.addUsers(await userIds(parley, usernames), ({ stage, done, total }) => {
      progress(`${stage}: ${done}/${total}`);
    });
    print(`invited ${usernames.join(', ')}`, {
      conversationId: conversation.id,
      invited: usernames,
    });
    await parley.close();
  },
};
