import { type Command, UsageError } from '../context.js';

/** `parley register [name]`: registers this CLI as a device of the signed-in user. */
export const register: Command = {
  summary: 'register this profile as a device (MLS identity, key packages)',
  usage: '[device name]',
  examples: ['parley --profile ana register', "parley --profile ana register 'ana laptop'"],
  async run({ args, client, print }) {
    if (args.length > 1)
      throw new UsageError('register takes at most one device name (quote it if it has spaces)');
    const parley = await client();
    // A new device joins its user's conversations by external commit while registering.
    const joined: { id: string; kind: string }[] = [];
    const stop = parley.onJoined((conversation) =>
      joined.push({ id: conversation.id, kind: conversation.kind }),
    );
    try {
      await parley.registerDevice(args[0] ?? 'cli');
    } finally {
      stop();
    }
    const lines = [`registered device ${parley.deviceId ?? ''} (${parley.identity ?? ''})`];
    if (joined.length > 0) {
      const list = joined.map(({ id, kind }) => `${id} (${kind === 'DIRECT' ? 'DM' : 'group'})`);
      lines.push(`joined ${joined.length} of your conversations: ${list.join(', ')}`);
    }
    print(lines.join('\n'), {
      deviceId: parley.deviceId,
      identity: parley.identity,
      joined,
    });
    return undefined;
  },
};
