import type { Command } from '../context.js';

/** `parley conversations`: the conversations this device is in. */
export const conversations: Command = {
  summary: 'list the conversations of this device',
  usage: '',
  async run({ client, print }) {
    const parley = await client();
    await parley.connect();
    for (const conversation of parley.conversations()) {
      const members = await conversation.members();
      const names = await parley.usernames(members.map((member) => member.userId));
      const people = [
        ...new Set(members.map((member) => names.get(member.userId) ?? member.userId)),
      ];
      print(`${conversation.id}  ${people.join(', ')}`, {
        conversationId: conversation.id,
        members: members.map((member) => ({
          ...member,
          username: names.get(member.userId) ?? null,
        })),
      });
    }
    await parley.close();
  },
};
