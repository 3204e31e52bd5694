import { chat } from './chat.js';
import { type Command, UsageError, userIds } from '../context.js';

/** `parley dm <username>`: the direct conversation with a user (opened or created), live. */
export const dm: Command = {
  summary: 'chat with one user: opens your direct conversation, or starts it (one per pair)',
  usage: '<username>',
  details: [
    'There is one direct conversation per pair of users, with every device of both and nobody',
    'else; if the other user started it at the same moment, parley joins that one. Then it is',
    'a chat like `parley chat` (/quit, Ctrl-D or Ctrl-C end it).',
  ],
  examples: ['parley --profile ana dm ben', "printf 'hi\\n/quit\\n' | parley --profile ana dm ben"],
  async run(context) {
    const { args, client, notice } = context;
    const [username, ...rest] = args;
    if (username === undefined || rest.length > 0)
      throw new UsageError('dm takes one username: parley dm <username>');
    const parley = await client();
    await parley.connect();
    const [peer] = await userIds(parley, [username]);
    if (peer === undefined) throw new UsageError('dm takes one username: parley dm <username>');
    const known = parley.conversations().map((conversation) => conversation.id);
    const conversation = await parley.startDirectConversation(peer);
    if (!known.includes(conversation.id))
      notice(`direct conversation ${conversation.id} with ${username}`, {
        conversationId: conversation.id,
        kind: 'DIRECT',
      });
    return chat.run({ ...context, args: [conversation.id] });
  },
};
