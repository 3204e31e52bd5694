import { type Command, userIds } from '../context.js';

/** `parley create <username...>`: a group with every device of the users. */
export const create: Command = {
  summary: 'create an encrypted group with these users (every device of each)',
  usage: '<username> [username...]',
  async run({ args, client, print, progress }) {
    const parley = await client();
    await parley.connect();
    const ids = await userIds(parley, args);
    const conversation = await parley.createConversation(ids, ({ stage, done, total }) => {
      progress(
        stage === 'claiming' ? `claiming key packages: ${done}/${total} users` : `${stage}…`,
      );
    });
    const members = await conversation.members();
    print(`created conversation ${conversation.id} with ${members.length} devices`, {
      conversationId: conversation.id,
      devices: members.length,
    });
    await parley.close();
  },
};
