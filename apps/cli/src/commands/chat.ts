import { createInterface } from 'node:readline';
import { type Command, resolveConversation, UsageError } from '../context.js';
import { formatMessage } from '../format.js';

/** `parley chat <conversation>`: live and interactive; each line typed is sent. */
export const chat: Command = {
  summary: 'chat live: shows who said what, sends each line you type (/quit or Ctrl-D ends)',
  usage: '<conversation>',
  async run({ args, client, print }) {
    const [prefix] = args;
    if (prefix === undefined) throw new UsageError('chat needs a conversation');
    const parley = await client();
    await parley.connect();
    const conversation = parley.conversation(resolveConversation(parley, prefix));
    const show = async () => {
      for await (const message of conversation.messages({ from: 'start' })) {
        const names = await parley.usernames(
          message.senderUserId === null ? [] : [message.senderUserId],
        );
        print(formatMessage(message, names), { ...message, sentAt: message.sentAt.toISOString() });
      }
    };
    const shown = show().catch((error: unknown) => {
      process.stderr.write(`parley: ${error instanceof Error ? error.message : String(error)}\n`);
    });
    const lines = createInterface({ input: process.stdin, terminal: false });
    for await (const line of lines) {
      const text = line.trim();
      if (text === '/quit') break;
      if (text !== '') await conversation.send(text);
    }
    await parley.close();
    await shown;
  },
};
