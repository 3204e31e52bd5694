import type { Conversation, ParleyClient } from '@parley/client';
import { type Command, UsageError } from '../context.js';
import { formatTimer } from '../duration.js';

// Up to this many people, `conversations` names them; more, it counts them.
const NAMED_MEMBERS = 4;

/** How a conversation is called: its name, or for a DM the peer's username. */
export async function titleOf(parley: ParleyClient, conversation: Conversation): Promise<string> {
  if (conversation.kind === 'DIRECT' && conversation.peerUserId !== null) {
    const names = await parley.usernames([conversation.peerUserId]);
    return names.get(conversation.peerUserId) ?? conversation.peerUserId.slice(0, 8);
  }
  return conversation.metadata.name ?? '(no name)';
}

/** `parley conversations`: the conversations this device is in (or was removed from). */
export const conversations: Command = {
  summary: 'list the conversations of this device: name or DM peer, kind, members, unread',
  usage: '',
  details: [
    'Each line: id, name (for a direct conversation the other user), kind (group or dm),',
    'members (their names when few, else how many people and devices), unread messages, and',
    'the message timer when messages disappear.',
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
        ...new Set(members.map((member) => names.get(member.userId) ?? member.userId.slice(0, 8))),
      ];
      const title = await titleOf(parley, conversation);
      const kind = conversation.kind === 'DIRECT' ? 'dm' : 'group';
      const who =
        people.length <= NAMED_MEMBERS
          ? people.join(', ')
          : `${people.length} people, ${members.length} devices`;
      const unread = conversation.unreadCount > 0 ? `  ${conversation.unreadCount} unread` : '';
      const status = conversation.status === 'active' ? '' : `  (${conversation.status})`;
      const timer =
        conversation.messageTimerSeconds === 0
          ? ''
          : `  disappearing ${formatTimer(conversation.messageTimerSeconds)}`;
      print(`${conversation.id}  ${title}  [${kind}]  ${who}${unread}${timer}${status}`, {
        conversationId: conversation.id,
        kind: conversation.kind,
        name: conversation.metadata.name,
        peerUserId: conversation.peerUserId,
        title,
        role: conversation.role,
        unread: conversation.unreadCount,
        messageTimerSeconds: conversation.messageTimerSeconds,
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
