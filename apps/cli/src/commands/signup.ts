import { type Command, UsageError } from '../context.js';
import { readPassword } from '../password.js';

/** `parley signup <username>`: creates a user and signs in. */
export const signup: Command = {
  summary: 'create a user and sign in (password from PARLEY_PASSWORD, else asked, hidden)',
  usage: '<username>',
  examples: [
    'parley --profile ana signup ana',
    "PARLEY_PASSWORD='correct horse battery' parley --profile ana signup ana",
  ],
  async run({ args, client, print }) {
    const [username, ...rest] = args;
    if (username === undefined || rest.length > 0)
      throw new UsageError('signup takes one username: parley signup <username>');
    const parley = await client();
    await parley.signUp(username, await readPassword());
    print(`signed up as ${username}`, { userId: parley.userId, username });
    return undefined;
  },
};
