import { type Command, UsageError } from '../context.js';

/** `parley conversations`: the conversations this device is in (or was removed from). */
export const conversations: Command = {
  summary: 'list the conversations of this device, with their members',
  usage: '',
  details: [
    'A conversation this device was removed from or left is listed with (removed) or (left);',
    'its history stays readable.',
  ],
  examples: ['parley --profile ana conversations', 'parley --profile ana --json conversations'],
  async run({ args, client, print }) {
    if (args.length > 0) throw new UsageError('conversations takes no arguments');
    const parley = await client();
    await parley.connect();
    for (const conversation of parley.conversations()) {
      const members = await conversation.members();
      const names = await parley.usernames(members.map((member) => member.userId));
      const people = [
        ...new Set(members.map((member) => names.get(member.userId) ?? member.userId)),
      ];
      const status = conversation.status === 'active' ? '' : `  (${conversation.status})`;
      print(`${conversation.id}  ${people.join(', ')}${status}`, {
        conversationId: conversation.id,
        status: conversation.status,
        members: members.map((member) => ({
          ...member,
          username: names.get(member.userId) ?? null,
        })),
      });
    }
    return undefined;
  },
};
