#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { ParleyClient } from '@parley/client';
import { chat } from './commands/chat.js';
import { conversations } from './commands/conversations.js';
import { create } from './commands/create.js';
import { devices } from './commands/devices.js';
import { dm } from './commands/dm.js';
import { history } from './commands/history.js';
import { invite } from './commands/invite.js';
import { leave } from './commands/leave.js';
import { register } from './commands/register.js';
import { remove } from './commands/remove.js';
import { rename } from './commands/rename.js';
import { role } from './commands/role.js';
import { send } from './commands/send.js';
import { signin } from './commands/signin.js';
import { signup } from './commands/signup.js';
import { timer } from './commands/timer.js';
import { whoami } from './commands/whoami.js';
import { type Command, defaultStatePath, type GlobalOptions, openClient } from './context.js';
import { describeError, EXIT, EXIT_CODES_HELP, UsageError } from './errors.js';
import { ProfileLock } from './lock.js';

const commands: Record<string, Command> = {
  signup,
  signin,
  register,
  whoami,
  devices,
  create,
  rename,
  timer,
  role,
  invite,
  remove,
  leave,
  send,
  chat,
  dm,
  conversations,
  history,
};

const version = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

const DEFAULT_SERVER = 'http://127.0.0.1:4000';
// How long a short command waits for messages left pending by an earlier run to go out.
const FLUSH_MS = 10_000;
const GLOBAL_USAGE =
  'usage: parley [--server URL] [--profile NAME | --state FILE] [--json] [--debug] <command> [arguments]';

function usage(): string {
  const width = Math.max(
    ...Object.entries(commands).map(([name, c]) => name.length + c.usage.length + 1),
  );
  const lines = Object.entries(commands).map(
    ([name, command]) => `  ${`${name} ${command.usage}`.padEnd(width)}  ${command.summary}`,
  );
  return [
    GLOBAL_USAGE,
    '',
    'commands:',
    ...lines,
    `  ${'help [command]'.padEnd(width)}  this text, or a command's options and examples`,
    '',
    'options:',
    `  --server URL       the server, http://host:4000 or …/graphql (PARLEY_SERVER; default ${DEFAULT_SERVER})`,
    '  --profile NAME     the device state ~/.parley/NAME.state (default: default)',
    '  --state FILE       the device state file, instead of a profile',
    '  --passphrase TEXT  encrypts the state on disk (better: PARLEY_PASSPHRASE)',
    '  --json             one JSON object per line; errors as {"error":{…}} on stderr',
    '  --debug            stack traces of internal errors',
    '  --version, --help',
    '',
    'PARLEY_PASSWORD saves typing the account password (signup, signin); one process at a time',
    'may use a profile (a lock next to its state file).',
    '',
    EXIT_CODES_HELP,
  ].join('\n');
}

function commandHelp(name: string, command: Command): string {
  return [
    `usage: parley [options] ${name} ${command.usage}`.trimEnd(),
    '',
    `${command.summary[0]?.toUpperCase() ?? ''}${command.summary.slice(1)}.`,
    ...(command.details === undefined ? [] : ['', ...command.details]),
    '',
    'examples:',
    ...command.examples.map((example) => `  ${example}`),
    '',
    'Global options and exit codes: parley --help',
  ].join('\n');
}

function unknownCommand(name: string): UsageError {
  return new UsageError(`unknown command ${name} (parley help lists the commands)`);
}

/** What a run holds that must be let go however it ends: the client and the profile lock. */
class Session {
  client: ParleyClient | null = null;
  lock: ProfileLock | null = null;
  /** Whether the client's live connection is up (from onConnection). */
  online = false;
  /** How error messages name the device state. */
  stateLabel = 'this profile';
  /** Set by a command (chat) that ends itself on Ctrl-C instead of being killed. */
  onInterrupt: (() => void) | null = null;
  /** Set by a command (chat) that prints the SDK's background errors itself. */
  onBackgroundError: ((line: string, json: Record<string, unknown>) => void) | null = null;

  async end(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (client !== null) {
      // close() ends every SDK promise and socket; a close that itself stalled must not keep
      // the process (and the profile lock) forever.
      await Promise.race([
        client.close().catch(() => undefined),
        new Promise((resolve) => setTimeout(resolve, 3_000).unref()),
      ]);
    }
    await this.lock?.release();
    this.lock = null;
  }
}

async function main(argv: string[], session: Session): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        server: { type: 'string' },
        profile: { type: 'string' },
        state: { type: 'string' },
        passphrase: { type: 'string' },
        name: { type: 'string' },
        json: { type: 'boolean', default: false },
        debug: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'V', default: false },
      },
    });
  } catch (error) {
    // parseArgs explains itself in its first sentence ("Unknown option '--x'").
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(`${message.split('. ')[0] ?? message} (parley --help lists the options)`);
  }
  const { values, positionals } = parsed;
  const [name, ...args] = positionals;
  if (values.version) {
    process.stdout.write(values.json ? `${JSON.stringify({ version })}\n` : `parley ${version}\n`);
    return;
  }
  if (name === undefined || name === 'help') {
    const topic = name === 'help' ? args[0] : undefined;
    if (topic === undefined) {
      process.stdout.write(`${usage()}\n`);
      return;
    }
    const command = commands[topic];
    if (command === undefined) throw unknownCommand(topic);
    process.stdout.write(`${commandHelp(topic, command)}\n`);
    return;
  }
  const command = commands[name];
  if (command === undefined) throw unknownCommand(name);
  if (values.help) {
    process.stdout.write(`${commandHelp(name, command)}\n`);
    return;
  }
  if (values.profile !== undefined && values.state !== undefined)
    throw new UsageError('give --profile or --state, not both');
  if (values.name !== undefined && name !== 'create')
    throw new UsageError('--name goes with create (parley rename names an existing conversation)');
  const profile = values.profile ?? 'default';
  const options: GlobalOptions = {
    server: values.server ?? process.env.PARLEY_SERVER ?? DEFAULT_SERVER,
    json: values.json,
    debug: values.debug,
    state: values.state ?? defaultStatePath(profile),
    stateLabel: values.state === undefined ? `profile ${profile}` : `state file ${values.state}`,
    passphrase: values.passphrase ?? process.env.PARLEY_PASSPHRASE,
    ...(values.name === undefined ? {} : { name: values.name }),
  };
  session.stateLabel = options.stateLabel;
  const text = (line: string, json: Record<string, unknown>, stream: NodeJS.WriteStream) => {
    stream.write(`${options.json ? JSON.stringify(json) : line}\n`);
  };
  const code = await command.run({
    args,
    options,
    client: async () => {
      if (session.client !== null) return session.client;
      const passphrase = options.passphrase;
      if (passphrase === undefined || passphrase === '')
        throw new UsageError(
          'Set PARLEY_PASSPHRASE (or --passphrase): it encrypts this device’s keys on disk',
        );
      session.lock ??= await ProfileLock.acquire(options.state, options.stateLabel);
      session.client = await openClient({ ...options, passphrase }, (error) => {
        const outcome = describeError(error, options.stateLabel);
        const line = `parley: ${outcome.message}`;
        const json = { error: { code: outcome.code, message: outcome.message } };
        if (session.onBackgroundError !== null) session.onBackgroundError(line, json);
        else text(line, json, process.stderr);
      });
      session.client.onConnection((change) => {
        session.online = change.state === 'online';
      });
      return session.client;
    },
    print: (line, json) => {
      text(line, json, process.stdout);
    },
    progress: (line) => {
      if (!options.json) process.stderr.write(`${line}\n`);
    },
    notice: (line, json = {}) => {
      text(`parley: ${line}`, { notice: line, ...json }, process.stderr);
    },
    onInterrupt: (handler) => {
      session.onInterrupt = handler;
    },
    onBackgroundError: (handler) => {
      session.onBackgroundError = handler;
    },
  });
  if (code !== undefined && code !== EXIT.ok) process.exitCode = code;
  else if (session.client !== null && session.online && name !== 'chat')
    await flushOutbox(session.client, session, (line) => {
      text(`parley: ${line}`, { notice: line }, process.stderr);
    });
}

/**
 * Messages an earlier run left pending go out when a profile connects; a short command waits for
 * them (bounded, while the server is there) before it closes the client, so that "sent the next
 * time the profile connects" holds for any command, not only a long chat.
 */
async function flushOutbox(
  client: ParleyClient,
  session: Session,
  notice: (line: string) => void,
): Promise<void> {
  // Also the metadata the SDK re-sends on its own (after an Add or an external join), which
  // `outbox()` does not list: a member told to re-send the name must not close before it has.
  const pending = () => client.pendingCount;
  const waiting = pending();
  if (waiting === 0) return;
  notice(`sending ${waiting} pending message${waiting === 1 ? '' : 's'}…`);
  const deadline = Date.now() + FLUSH_MS;
  while (pending() > 0 && session.online && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 50));
  const left = pending();
  if (left > 0)
    notice(
      `${left} message${left === 1 ? '' : 's'} still pending: sent the next time ${session.stateLabel} connects`,
    );
}

async function run(): Promise<void> {
  const argv = process.argv.slice(2);
  // Known before parsing, so that even an argument error can be reported as asked.
  const json = argv.includes('--json');
  const debug = argv.includes('--debug');
  const session = new Session();
  process.on('SIGINT', () => {
    if (session.onInterrupt !== null) session.onInterrupt();
    // Nothing to finish: the state is saved atomically and pending messages are already stored.
    else process.exit(EXIT.interrupted);
  });
  // `parley history x | head -1`: once the reader is gone there is nobody left to tell.
  process.stdout.on('error', () => process.exit());
  // A closed terminal or a kill ends parley the same way, letting the profile lock go ('exit').
  process.on('SIGHUP', () => process.exit(129));
  process.on('SIGTERM', () => process.exit(143));
  try {
    await main(argv, session);
  } catch (error) {
    const outcome = describeError(error, session.stateLabel);
    process.stderr.write(
      json
        ? `${JSON.stringify({ error: { code: outcome.code, message: outcome.message, exitCode: outcome.exitCode } })}\n`
        : `parley: ${outcome.message}\n`,
    );
    if (debug && error instanceof Error && error.stack !== undefined)
      process.stderr.write(`${error.stack}\n`);
    process.exitCode = outcome.exitCode;
  } finally {
    await session.end();
  }
  // Last resort: whatever handle is still open (a socket nobody closed), parley ends now that
  // its work is done. Unref'd, so a clean exit does not wait for it.
  setTimeout(() => {
    if (debug)
      process.stderr.write(
        `parley: exiting with handles still open: ${process.getActiveResourcesInfo().join(', ')}\n`,
      );
    process.exit();
  }, 1_000).unref();
}

await run();
