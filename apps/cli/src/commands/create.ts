import { type Command, progressLine, UsageError, userIds } from '../context.js';

/** `parley create <username...>`: a group with every device of the users. */
export const create: Command = {
  summary: 'create an encrypted group with these users (every device of each)',
  usage: '[--name "<name>"] <username...>',
  details: [
    'Prints the conversation id; its first characters are enough for other commands.',
    'You are its admin. --name names it (encrypted: only members read it; parley rename changes it).',
  ],
  examples: [
    'parley --profile ana create ben',
    'parley --profile ana create --name "Trip to Lyon" ben cat',
  ],
  async run({ args, options, client, print, progress }) {
    if (args.length === 0) throw new UsageError('create needs at least one username');
    const parley = await client();
    await parley.connect();
    const ids = await userIds(parley, args);
    const conversation = await parley.createConversation(ids, ({ stage, done, total }) => {
      // The SDK adds the creator's own other devices: the count includes them.
      const line = progressLine(stage, done, total, true);
      if (line !== null) progress(line);
    });
    if (options.name !== undefined && options.name !== '')
      await conversation.setMetadata({ name: options.name });
    const members = await conversation.members();
    const named = options.name === undefined || options.name === '' ? '' : ` "${options.name}"`;
    print(`created conversation ${conversation.id}${named} with ${members.length} devices`, {
      conversationId: conversation.id,
      name: options.name ?? null,
      devices: members.length,
    });
    return undefined;
  },
};
