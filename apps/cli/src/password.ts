import { createInterface } from 'node:readline/promises';

/** The password from PARLEY_PASSWORD, else asked for on the terminal. */
export async function readPassword(): Promise<string> {
  const fromEnv = process.env.PARLEY_PASSWORD;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const prompt = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  try {
    return await prompt.question('password: ');
  } finally {
    prompt.close();
  }
}
