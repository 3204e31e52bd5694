/**
 * The real Parley server for the benchmarks, on a fresh PostgreSQL database, plus the
 * instruments the report needs: queries and transactions sent by this thread's `pg` clients,
 * events published on the bus, the server-side time split of submitCommitBundle, and the CPU
 * of the database's backends.
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { ConsoleLogger } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import pg from 'pg';
import { createApp } from '../apps/server/src/bootstrap.js';
import { type Config, loadConfig } from '../apps/server/src/config/config.js';
import type { SubmitCommitBundleInput } from '../apps/server/src/conversations/conversation.input.js';
import { ConversationsService } from '../apps/server/src/conversations/conversations.service.js';
import { EventBus, type OutgoingEvent } from '../apps/server/src/events/event-bus.js';
import { processesCpuMs } from './cpu.js';

/** A database created for one benchmark run, dropped afterwards. */
export interface BenchDatabase {
  name: string;
  url: string;
  /** A client on that database for the bench's own statistics queries. */
  admin: pg.Client;
  drop(): Promise<void>;
}

/** Creates an empty database on the server named by `adminUrl`. */
export async function freshDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `parley_bench_${randomBytes(5).toString('hex')}`;
  const server = new pg.Client({ connectionString: adminUrl });
  await server.connect();
  await server.query(`CREATE DATABASE ${name}`);
  await server.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  return {
    name,
    url: url.toString(),
    admin,
    async drop() {
      await admin.end();
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/** PIDs of the backends connected to the database, except the bench's own statistics client. */
export async function backendPids(database: BenchDatabase): Promise<number[]> {
  const { rows } = await database.admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
    [database.name],
  );
  return rows.map((row) => row.pid);
}

/** CPU of the database's backends now, per PID. */
export async function databaseCpu(database: BenchDatabase): Promise<Map<number, number>> {
  return processesCpuMs(await backendPids(database));
}

/** Queries and transactions this thread's `pg` clients sent (the server's pool, the baseline). */
export const queryCounter = { queries: 0, transactions: 0 };
let counting = false;

/** Counts every query of every `pg` client in this thread from now on. */
export function countQueries(): void {
  if (counting) return;
  counting = true;
  const prototype = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = prototype.query;
  prototype.query = function (this: unknown, ...args: unknown[]): unknown {
    queryCounter.queries += 1;
    const [first] = args;
    const text =
      typeof first === 'string'
        ? first
        : typeof first === 'object' && first !== null && 'text' in first
          ? String(first.text)
          : '';
    if (/^\s*(START TRANSACTION|BEGIN)/i.test(text)) queryCounter.transactions += 1;
    return original.apply(this, args);
  };
}

/** Server-side time of the last commit bundles: the MLS checks, the whole service call. */
export interface CommitTimings {
  checkMs: number;
  serviceMs: number;
  publishMs: number;
}

/** A running Parley server and its instruments. */
export interface ParleyServer {
  app: NestFastifyApplication;
  config: Config;
  url: string;
  wsUrl: string;
  /** Events published on the bus so far, and the time spent publishing them. */
  events: { published: number; publishMs: number };
  /** One entry per submitCommitBundle call, in order. */
  commits: CommitTimings[];
  close(): Promise<void>;
}

/**
 * Rate limits and the devices-per-user limit raised out of the way: the bench makes hundreds
 * of accounts and sends thousands of messages a minute from one address, and measures the
 * delivery path, not refusals. The limiters still count every request (their cost stays in).
 */
const BENCH_LIMITS: Record<string, string> = Object.fromEntries(
  [
    'SIGN_INS_PER_ADDRESS_PER_MINUTE',
    'SIGN_UPS_PER_ADDRESS_PER_HOUR',
    'MESSAGES_PER_DEVICE_PER_MINUTE',
    'COMMIT_BUNDLES_PER_DEVICE_PER_MINUTE',
    'KEY_PACKAGE_UPLOADS_PER_DEVICE_PER_MINUTE',
    'CONNECTIONS_PER_ADDRESS_PER_MINUTE',
    'CONNECTIONS_PER_USER_PER_MINUTE',
    'SUBSCRIPTIONS_PER_USER_PER_MINUTE',
    'SUBSCRIPTIONS_PER_ADDRESS_PER_MINUTE',
  ]
    .map((name): [string, string] => [`PARLEY_RATE_${name}`, '1000000'])
    .concat([
      ['PARLEY_LIMIT_CLAIMS_PER_MINUTE', '1000000'],
      ['PARLEY_LIMIT_CLAIMS_PER_TARGET_PER_MINUTE', '1000000'],
      ['PARLEY_LIMIT_DEVICES_PER_USER', '10000'],
    ] as [string, string][]),
);

/** Boots the real AppModule (createApp) on `databaseUrl`, listening on 127.0.0.1. */
export async function startParley(
  databaseUrl: string,
  overrides: Partial<Config> = {},
  tokenSecret: string = randomBytes(32).toString('hex'),
): Promise<ParleyServer> {
  const base = loadConfig({
    ...BENCH_LIMITS,
    PARLEY_DOMAIN: 'parley.bench',
    PARLEY_TOKEN_SECRET: tokenSecret,
    DATABASE_URL: databaseUrl,
  });
  const config: Config = { ...base, port: 0, ...overrides };
  const logger = new ConsoleLogger({ logLevels: ['error', 'warn'] });
  const app = await createApp(config, { logger });
  await app.listen(0, '127.0.0.1');
  const url = `${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/graphql`;

  const events = { published: 0, publishMs: 0 };
  const bus = app.get(EventBus);
  const publish = bus.publish.bind(bus);
  // Time during which at least one publish was under way: publishes may overlap (a commit's
  // events go out together), and summing each one's duration counted the overlap many times.
  let inFlight = 0;
  let busySince = 0;
  // Generic like EventBus.publish, whose signature it must keep.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  bus.publish = async <E extends OutgoingEvent>(channel: string, event: E): Promise<void> => {
    if (inFlight === 0) busySince = performance.now();
    inFlight += 1;
    events.published += 1;
    try {
      await publish(channel, event);
    } finally {
      inFlight -= 1;
      if (inFlight === 0) events.publishMs += performance.now() - busySince;
    }
  };

  // The service's own methods, wrapped on the instance: MLS checks happen in checkBundle, before
  // the transaction; the rest of submitCommitBundle is the transaction and the publishing.
  const commits: CommitTimings[] = [];
  const conversations: ConversationsService = app.get(ConversationsService);
  const service = conversations as unknown as {
    checkBundle(input: SubmitCommitBundleInput): Promise<unknown>;
    submitCommitBundle(userId: string, input: SubmitCommitBundleInput): Promise<unknown>;
  };
  const check = service.checkBundle.bind(service);
  const submit = service.submitCommitBundle.bind(service);
  let current: CommitTimings | undefined;
  service.checkBundle = async (input) => {
    const start = performance.now();
    try {
      return await check(input);
    } finally {
      if (current !== undefined) current.checkMs = performance.now() - start;
    }
  };
  service.submitCommitBundle = async (userId, input) => {
    const timings: CommitTimings = { checkMs: Number.NaN, serviceMs: Number.NaN, publishMs: 0 };
    current = timings;
    const start = performance.now();
    const publishedBefore = events.publishMs;
    try {
      return await submit(userId, input);
    } finally {
      timings.serviceMs = performance.now() - start;
      timings.publishMs = events.publishMs - publishedBefore;
      commits.push(timings);
      current = undefined;
    }
  };

  return {
    app,
    config,
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    events,
    commits,
    async close() {
      // Let the subscriptions the clients just closed end first, or shutting the bus down
      // would fail them (and log each one as an error).
      const deadline = performance.now() + 5000;
      while (bus.openStreams > 0 && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await app.close();
    },
  };
}
