import { homedir } from 'node:os';
import { join } from 'node:path';
import { FileStateStore, ParleyClient, tsMlsEngineFactory } from '@parley/client';
import WebSocket from 'ws';

/** Options every command takes. */
export interface GlobalOptions {
  /** GraphQL URL of the Parley server. */
  server: string;
  /** Print JSON (one object per line) instead of text. */
  json: boolean;
  /** The encrypted state file of this CLI's device. */
  state: string;
  /** Passphrase the state file is encrypted under. */
  passphrase: string;
}

/** A failure the user can fix; printed without a stack trace. */
export class UsageError extends Error {}

/** What a command gets: its arguments, the global options, and ways to print. */
export interface CommandContext {
  args: string[];
  options: GlobalOptions;
  /** The SDK client of this CLI's device (state loaded from the state file). */
  client: () => Promise<ParleyClient>;
  /** A result: text for people, or a JSON line with --json. */
  print: (text: string, json: Record<string, unknown>) => void;
  /** Progress of long work, on stderr so that it never mixes with results. */
  progress: (text: string) => void;
}

/** One CLI command. */
export interface Command {
  /** One line shown by `parley help`. */
  summary: string;
  /** Usage after `parley <name>`. */
  usage: string;
  run(context: CommandContext): Promise<void>;
}

/** The default state file of a profile. */
export function defaultStatePath(profile: string): string {
  return join(homedir(), '.parley', `${profile}.state`);
}

/**
 * The CLI's engine is ts-mls: pure TypeScript that runs in Node as it is and whose state can be
 * saved to a file (see README, "Which MLS engine"); the OpenMLS engine is the browser's default.
 */
export function openClient(options: GlobalOptions): Promise<ParleyClient> {
  return ParleyClient.open({
    url: options.server,
    engine: tsMlsEngineFactory,
    store: new FileStateStore(options.state, { passphrase: options.passphrase }),
    webSocketImpl: WebSocket,
    onError: (error: unknown) => {
      process.stderr.write(`parley: ${error instanceof Error ? error.message : String(error)}\n`);
    },
  });
}

/** A conversation id from a prefix of it (ids are long; a few characters usually suffice). */
export function resolveConversation(client: ParleyClient, prefix: string): string {
  const matches = client
    .conversations()
    .filter((conversation) => conversation.id.startsWith(prefix));
  if (matches.length === 1 && matches[0] !== undefined) return matches[0].id;
  throw new UsageError(
    matches.length === 0
      ? `No conversation starts with ${prefix}`
      : `${prefix} matches several conversations`,
  );
}

/** User ids of usernames. */
export async function userIds(client: ParleyClient, usernames: string[]): Promise<string[]> {
  return Promise.all(usernames.map(async (username) => (await client.findUser(username)).id));
}
