import { type Command, UsageError } from '../context.js';
import { readPassword } from '../password.js';

/** `parley signup <username>`: creates a user and signs in. */
export const signup: Command = {
  summary: 'create a user (password from PARLEY_PASSWORD or a prompt) and sign in',
  usage: '<username>',
  async run({ args, client, print }) {
    const [username] = args;
    if (username === undefined) throw new UsageError('signup needs a username');
    const parley = await client();
    await parley.signUp(username, await readPassword());
    print(`signed up as ${username}`, { userId: parley.userId, username });
    await parley.close();
  },
};
