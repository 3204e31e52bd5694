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
    await parley.registerDevice(args[0] ?? 'cli');
    print(`registered device ${parley.deviceId ?? ''} (${parley.identity ?? ''})`, {
      deviceId: parley.deviceId,
      identity: parley.identity,
    });
    return undefined;
  },
};
