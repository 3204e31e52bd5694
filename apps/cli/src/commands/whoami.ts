import type { Command } from '../context.js';

/** `parley whoami`: the signed-in user and this device. */
export const whoami: Command = {
  summary: 'show the signed-in user and this device',
  usage: '',
  async run({ client, print }) {
    const parley = await client();
    print(
      `user ${parley.userId ?? '(not signed in)'}, device ${parley.deviceId ?? '(not registered)'}`,
      {
        userId: parley.userId,
        deviceId: parley.deviceId,
        identity: parley.identity,
      },
    );
    await parley.close();
  },
};
