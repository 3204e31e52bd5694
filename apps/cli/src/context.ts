import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  FileStateStore,
  NotFoundError,
  ParleyClient,
  type Conversation,
  tsMlsEngineFactory,
} from '@parley/client';
import WebSocket from 'ws';
import { CliError, EXIT } from './errors.js';

export { UsageError } from './errors.js';

/** Options every command takes. */
export interface GlobalOptions {
  /** URL of the Parley server (base or GraphQL URL). */
  server: string;
  /** Print JSON (one object per line) instead of text; errors too (on stderr). */
  json: boolean;
  /** Print stacks of internal errors. */
  debug: boolean;
  /** The encrypted state file of this CLI's device. */
  state: string;
  /** How messages name the state: `profile ana` or `state file /path`. */
  stateLabel: string;
  /** Passphrase the state file is encrypted under (undefined: not set). */
  passphrase: string | undefined;
  /** `--name`: the name of the group `create` makes (only create takes it). */
  name?: string;
}

/** What a command gets: its arguments, the global options, and ways to print. */
export interface CommandContext {
  args: string[];
  options: GlobalOptions;
  /**
   * The SDK client of this CLI's device (state loaded from the state file), opened once under
   * the profile lock; main closes it however the command ends.
   */
  client: () => Promise<ParleyClient>;
  /** A result: text for people, or a JSON line with --json. */
  print: (text: string, json: Record<string, unknown>) => void;
  /** Progress of long work, on stderr so that it never mixes with results (not with --json). */
  progress: (text: string) => void;
  /** A notice for people on stderr (`{"notice": …}` with --json). */
  notice: (text: string, json?: Record<string, unknown>) => void;
  /** Makes Ctrl-C (SIGINT) call `handler` instead of ending the process at once. */
  onInterrupt: (handler: () => void) => void;
  /** Sends the SDK's background errors (one line each) to `handler` instead of stderr. */
  onBackgroundError: (handler: (line: string, json: Record<string, unknown>) => void) => void;
}

/** One CLI command. */
export interface Command {
  /** One line shown by `parley help`. */
  summary: string;
  /** Usage after `parley <name>`. */
  usage: string;
  /** More lines for `parley help <name>`. */
  details?: string[];
  /** Examples for `parley help <name>`. */
  examples: string[];
  /** Runs; resolves to an exit code other than 0 when the command ends that way on purpose. */
  run(context: CommandContext): Promise<number | undefined>;
}

/** The default state file of a profile. */
export function defaultStatePath(profile: string): string {
  return join(homedir(), '.parley', `${profile}.state`);
}

/**
 * The CLI's engine is ts-mls: pure TypeScript that runs in Node as it is and whose state can be
 * saved to a file (see README, "Which MLS engine"); the OpenMLS engine is the browser's default.
 */
export function openClient(
  options: GlobalOptions & { passphrase: string },
  onError: (error: unknown) => void,
): Promise<ParleyClient> {
  return ParleyClient.open({
    url: options.server,
    engine: tsMlsEngineFactory,
    store: new FileStateStore(options.state, { passphrase: options.passphrase }),
    webSocketImpl: WebSocket,
    onError,
  });
}

/** A conversation from a prefix of its id (ids are long; a few characters usually suffice). */
export function resolveConversation(client: ParleyClient, prefix: string): Conversation {
  const matches = client
    .conversations()
    .filter((conversation) => conversation.id.startsWith(prefix));
  if (matches.length === 1 && matches[0] !== undefined) return matches[0];
  throw new CliError(
    matches.length === 0 ? 'NOT_FOUND' : 'AMBIGUOUS',
    matches.length === 0
      ? `No conversation of this device starts with ${prefix} (parley conversations lists them)`
      : `${prefix} matches ${matches.length} conversations; give more characters of the id`,
    matches.length === 0 ? EXIT.failed : EXIT.usage,
  );
}

/** User ids of usernames; an unknown username is named. */
export async function userIds(client: ParleyClient, usernames: string[]): Promise<string[]> {
  return Promise.all(
    usernames.map(async (username) => {
      try {
        return (await client.findUser(username)).id;
      } catch (error) {
        if (error instanceof NotFoundError)
          throw new CliError('NOT_FOUND', `No user named ${username}`, EXIT.failed);
        throw error;
      }
    }),
  );
}

/** `claiming key packages…` lines of addUsers/createConversation, counted in users. */
export function progressLine(
  stage: string,
  done: number,
  total: number,
  youIncluded = false,
): string | null {
  const users = `${total} user${total === 1 ? '' : 's'}`;
  switch (stage) {
    case 'claiming':
      // Claims go out 100 users at a time: a count only means something with several batches.
      return done === 0
        ? `claiming key packages of ${users} (every device of each${youIncluded ? ', you included' : ''})…`
        : `claiming key packages: ${done}/${total} users done…`;
    case 'committing':
      return `key packages of ${users} claimed; committing the group change…`;
    default:
      return null;
  }
}
