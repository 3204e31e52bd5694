import { createInterface } from 'node:readline';
import { CliError, EXIT, UsageError } from './errors.js';

/**
 * The account password: PARLEY_PASSWORD, else typed on the terminal with nothing echoed (raw
 * mode, as ssh and sudo do), else the first line of a piped stdin.
 */
export async function readPassword(): Promise<string> {
  const fromEnv = process.env.PARLEY_PASSWORD;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const password = process.stdin.isTTY ? await typedHidden('password: ') : await firstLine();
  if (password === '') throw new UsageError('No password given (type one, or set PARLEY_PASSWORD)');
  return password;
}

/** Reads keys in raw mode, so that the terminal echoes nothing, until Enter. */
function typedHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(prompt);
  return new Promise<string>((resolve, reject) => {
    let typed = '';
    const finish = (outcome: () => void) => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      outcome();
    };
    const onData = (chunk: string) => {
      for (const key of chunk) {
        if (key === '\r' || key === '\n') {
          finish(() => {
            resolve(typed);
          });
          return;
        }
        if (key === '\u0003') {
          finish(() => {
            reject(new CliError('INTERRUPTED', 'Interrupted', EXIT.interrupted));
          });
          return;
        }
        if (key === '\u0004' && typed === '') {
          finish(() => {
            resolve('');
          });
          return;
        }
        if (key === '\u007f' || key === '\b') typed = typed.slice(0, -1);
        else if (key >= ' ') typed += key;
      }
    };
    input.setEncoding('utf8');
    input.setRawMode(true);
    input.on('data', onData);
    input.resume();
  });
}

/** The first line of a stdin that is not a terminal (`echo pw | parley signin ana`). */
function firstLine(): Promise<string> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin, terminal: false });
    let answered = false;
    lines.once('line', (line) => {
      answered = true;
      lines.close();
      resolve(line);
    });
    lines.once('close', () => {
      if (!answered) resolve('');
    });
  });
}
