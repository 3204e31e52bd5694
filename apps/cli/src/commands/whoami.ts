import { type Command, UsageError } from '../context.js';

/** `parley whoami`: the signed-in user and this device. */
export const whoami: Command = {
  summary: 'show the signed-in user (name and id) and this device',
  usage: '',
  examples: ['parley --profile ana whoami', 'parley --profile ana --json whoami'],
  async run({ args, client, print }) {
    if (args.length > 0) throw new UsageError('whoami takes no arguments');
    const parley = await client();
    if (parley.userId === null) {
      print('not signed in (parley signup <username> or parley signin <username>)', {
        userId: null,
        username: null,
        deviceId: null,
        identity: null,
      });
      return undefined;
    }
    const me = await parley.me();
    print(
      `${me.username ?? '(unknown name)'} (user ${me.userId}), device ${me.deviceId ?? '(not registered: parley register)'}`,
      { ...me },
    );
    return undefined;
  },
};
