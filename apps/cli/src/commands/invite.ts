import {
  type Command,
  progressLine,
  resolveConversation,
  UsageError,
  userIds,
} from '../context.js';

/** `parley invite <conversation> <username...>`: adds users to a group. */
export const invite: Command = {
  summary: 'add users (every device of each) to a conversation',
  usage: '<conversation> <username...>',
  examples: ['parley --profile ana invite 3f2a cat', 'parley --profile ana invite 3f2a cat dan'],
  async run({ args, client, print, progress }) {
    const [prefix, ...usernames] = args;
    if (prefix === undefined || usernames.length === 0)
      throw new UsageError('invite needs a conversation and at least one username');
    const parley = await client();
    await parley.connect();
    const conversation = resolveConversation(parley, prefix);
    await conversation.addUsers(await userIds(parley, usernames), ({ stage, done, total }) => {
      const line = progressLine(stage, done, total);
      if (line !== null) progress(line);
    });
    print(`invited ${usernames.join(', ')}`, {
      conversationId: conversation.id,
      invited: usernames,
    });
    return undefined;
  },
};
