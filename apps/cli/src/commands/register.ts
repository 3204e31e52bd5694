import type { Command } from '../context.js';

/** `parley register [name]`: registers this CLI as a device of the signed-in user. */
export const register: Command = {
  summary: 'register this CLI as a device (MLS identity, key packages)',
  usage: '[device name]',
  async run({ args, client, print }) {
    const parley = await client();
    await parley.registerDevice(args[0] ?? 'cli');
    print(`registered device ${parley.deviceId ?? ''} (${parley.identity ?? ''})`, {
      deviceId: parley.deviceId,
      identity: parley.identity,
    });
    await parley.close();
  },
};
