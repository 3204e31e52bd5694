import { type Command, resolveConversation, UsageError } from '../context.js';

/** `parley leave <conversation>`: this device leaves a group. */
export const leave: Command = {
  summary: 'leave a conversation (this device stops reading and posting at once)',
  usage: '<conversation>',
  details: ['Its history stays readable on this device (parley history).'],
  examples: ['parley --profile ben leave 3f2a'],
  async run({ args, client, print }) {
    const [prefix, ...rest] = args;
    if (prefix === undefined || rest.length > 0)
      throw new UsageError('leave takes one conversation: parley leave <conversation>');
    const parley = await client();
    await parley.connect();
    const conversation = resolveConversation(parley, prefix);
    await conversation.leave();
    print(`left conversation ${conversation.id}`, { conversationId: conversation.id, left: true });
    return undefined;
  },
};
