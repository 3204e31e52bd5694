import { CliError, EXIT } from '../errors.js';
import { type Command, UsageError } from '../context.js';

/** `parley devices [delete <id>]`: the signed-in user's devices. */
export const devices: Command = {
  summary: 'list your devices, or delete one (devices delete <id>)',
  usage: '[delete <device id>]',
  details: [
    'Deleting a device revokes it at once: it leaves every conversation and can do nothing more.',
    'The first characters of the id are enough.',
  ],
  examples: ['parley --profile ana devices', 'parley --profile ana devices delete 9c41'],
  async run({ args, client, print }) {
    const [action, prefix, ...rest] = args;
    if (action !== undefined && (action !== 'delete' || prefix === undefined || rest.length > 0))
      throw new UsageError('usage: parley devices, or parley devices delete <device id>');
    const parley = await client();
    const listed = await parley.devices();
    if (action === undefined || prefix === undefined) {
      for (const device of listed)
        print(
          `${device.id}  ${device.name}  registered ${device.createdAt.toISOString().slice(0, 16).replace('T', ' ')}${device.current ? '  (this device)' : ''}`,
          {
            deviceId: device.id,
            name: device.name,
            createdAt: device.createdAt.toISOString(),
            current: device.current,
          },
        );
      return undefined;
    }
    const matches = listed.filter((device) => device.id.startsWith(prefix));
    const [device] = matches;
    if (device === undefined || matches.length > 1)
      throw matches.length === 0
        ? new CliError(
            'NOT_FOUND',
            `No device of yours starts with ${prefix} (parley devices lists them)`,
            EXIT.failed,
          )
        : new UsageError(`${prefix} matches ${matches.length} devices; give more characters`);
    await parley.deleteDevice(device.id);
    print(
      `deleted device ${device.id} (${device.name})${device.current ? '; this profile can do nothing more' : ''}`,
      { deviceId: device.id, deleted: true, current: device.current },
    );
    return undefined;
  },
};
