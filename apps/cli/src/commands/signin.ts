import { type Command, UsageError } from '../context.js';
import { readPassword } from '../password.js';

/** `parley signin <username>`: signs in. */
export const signin: Command = {
  summary: 'sign in (password from PARLEY_PASSWORD or a prompt)',
  usage: '<username>',
  async run({ args, client, print }) {
    const [username] = args;
    if (username === undefined) throw new UsageError('signin needs a username');
    const parley = await client();
    await parley.signIn(username, await readPassword());
    print(`signed in as ${username}`, { userId: parley.userId, username });
    await parley.close();
  },
};
