#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ParleyError } from '@parley/client';
import { chat } from './commands/chat.js';
import { conversations } from './commands/conversations.js';
import { create } from './commands/create.js';
import { history } from './commands/history.js';
import { invite } from './commands/invite.js';
import { register } from './commands/register.js';
import { remove } from './commands/remove.js';
import { send } from './commands/send.js';
import { signin } from './commands/signin.js';
import { signup } from './commands/signup.js';
import { whoami } from './commands/whoami.js';
import {
  type Command,
  defaultStatePath,
  type GlobalOptions,
  openClient,
  UsageError,
} from './context.js';

const commands: Record<string, Command> = {
  signup,
  signin,
  register,
  create,
  invite,
  remove,
  send,
  chat,
  conversations,
  history,
  whoami,
};

function help(): string {
  const lines = Object.entries(commands).map(
    ([name, command]) => `  parley ${name} ${command.usage}`.padEnd(56) + command.summary,
  );
  return [
    'usage: parley [--server URL] [--profile NAME | --state FILE] [--json] <command> [arguments]',
    '',
    ...lines,
    '',
    'The device state is encrypted under PARLEY_PASSPHRASE (or --passphrase).',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      server: {
        type: 'string',
        default: process.env.PARLEY_SERVER ?? 'http://127.0.0.1:4000/graphql',
      },
      profile: { type: 'string', default: 'default' },
      state: { type: 'string' },
      passphrase: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [name, ...args] = positionals;
  const command = name === undefined ? undefined : commands[name];
  if (values.help || command === undefined) {
    process.stdout.write(`${help()}\n`);
    return name === undefined || values.help ? 0 : 2;
  }
  const passphrase = values.passphrase ?? process.env.PARLEY_PASSPHRASE;
  if (passphrase === undefined || passphrase === '') {
    throw new UsageError(
      'Set PARLEY_PASSPHRASE (or --passphrase): it encrypts this device’s keys on disk',
    );
  }
  const options: GlobalOptions = {
    server: values.server,
    json: values.json,
    state: values.state ?? defaultStatePath(values.profile),
    passphrase,
  };
  await command.run({
    args,
    options,
    client: () => openClient(options),
    print: (text, json) => {
      process.stdout.write(`${options.json ? JSON.stringify(json) : text}\n`);
    },
    progress: (text) => {
      if (!options.json) process.stderr.write(`${text}\n`);
    },
  });
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const known = error instanceof UsageError || error instanceof ParleyError;
    process.stderr.write(`parley: ${error instanceof Error ? error.message : String(error)}\n`);
    if (!known && error instanceof Error && error.stack !== undefined) {
      process.stderr.write(`${error.stack}\n`);
    }
    process.exitCode = known ? 1 : 70;
  },
);
