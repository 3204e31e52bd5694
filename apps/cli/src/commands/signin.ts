import { type Command, UsageError } from '../context.js';
import { readPassword } from '../password.js';

/** `parley signin <username>`: signs in. */
export const signin: Command = {
  summary: 'sign in (password from PARLEY_PASSWORD, else asked, hidden)',
  usage: '<username>',
  details: ['A new profile signs in, then runs parley register to become one more device.'],
  examples: ['parley --profile ana-laptop signin ana && parley --profile ana-laptop register'],
  async run({ args, client, print }) {
    const [username, ...rest] = args;
    if (username === undefined || rest.length > 0)
      throw new UsageError('signin takes one username: parley signin <username>');
    const parley = await client();
    await parley.signIn(username, await readPassword());
    print(`signed in as ${username}`, { userId: parley.userId, username });
    return undefined;
  },
};
