import { randomBytes } from 'node:crypto';
import type { LoggerService } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import pg from 'pg';
import type { DestinationStream } from 'pino';
import { describe } from 'vitest';
import { createApp } from '../../apps/server/src/bootstrap.js';
import { type Config, loadConfig } from '../../apps/server/src/config/config.js';

/** Which database this run of the end-to-end suites uses (set per vitest project). */
export const testDatabase = process.env.PARLEY_TEST_DB === 'postgres' ? 'postgres' : 'pglite';

const postgresUrl = process.env.PARLEY_TEST_DATABASE_URL;

/** Why the end-to-end suites skip in this run, if they do. */
export const e2eSkipReason =
  testDatabase === 'postgres' && postgresUrl === undefined
    ? 'PARLEY_TEST_DATABASE_URL is not set'
    : undefined;
if (e2eSkipReason !== undefined) console.warn(`e2e:postgres skipped: ${e2eSkipReason}`);

/** `describe` for end-to-end suites: skipped, saying why, on PostgreSQL when no server is set. */
export const describeE2E = describe.skipIf(e2eSkipReason !== undefined);

/** A GraphQL response as the tests see it. */
export interface GraphqlResponse<T> {
  data?: T | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** A Parley server listening on a loopback port, with its own fresh database. */
export interface TestApp {
  app: NestFastifyApplication;
  url: string;
  config: Config;
  /** Posts one GraphQL operation over HTTP, as a client would. */
  gql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    token?: string,
  ): Promise<GraphqlResponse<T>>;
  close(): Promise<void>;
}

/** What a test client needs of a server: its URL and a way to post GraphQL (in-process or not). */
export type GraphqlEndpoint = Pick<TestApp, 'url' | 'gql'>;

/** Creates an empty database on the PostgreSQL server and returns its URL and a dropper. */
export async function freshPostgresDatabase(
  baseUrl: string,
): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `parley_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: baseUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/**
 * Rate limits out of the way of suites that sign up many users and open many sockets from one
 * address, as environment variables (for in-process apps and child processes alike).
 */
export const RELAXED_RATE_LIMITS_ENV: Readonly<Record<string, string>> = {
  ...Object.fromEntries(
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
    ].map((name) => [`PARLEY_RATE_${name}`, '1000000']),
  ),
  PARLEY_RATE_SIGN_IN_FREE_FAILURES: '1000',
};

/** The configuration tests run with: the default one, a test domain, and any overrides. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  const base = loadConfig({
    PARLEY_DOMAIN: 'parley.test',
    PARLEY_TOKEN_SECRET: randomBytes(32).toString('hex'),
    PARLEY_DATA_DIR: ':memory:',
    // Rate limits out of the way (the rate-limit suite sets its own), under a key prefix of their
    // own, so that counters an earlier run left in a shared Redis count for nothing.
    ...RELAXED_RATE_LIMITS_ENV,
    PARLEY_RATE_KEY_PREFIX: `parley-test-${randomBytes(6).toString('hex')}`,
  });
  return { ...base, port: 0, ...overrides };
}

/** Boots the real AppModule on a fresh database (PGlite in memory, or a new PostgreSQL database). */
export async function startTestApp(
  overrides: Partial<Config> = {},
  options: { logger?: LoggerService; logStream?: DestinationStream } = {},
): Promise<TestApp> {
  let drop = async () => {};
  let config = testConfig(overrides);
  if (
    testDatabase === 'postgres' &&
    postgresUrl !== undefined &&
    overrides.database === undefined
  ) {
    const database = await freshPostgresDatabase(postgresUrl);
    drop = database.drop;
    config = { ...config, database: { kind: 'postgres', url: database.url } };
  }
  // With a logStream, every line (Nest's and the requests') goes there as JSON.
  const app = await createApp(
    config,
    options.logStream === undefined
      ? { logger: options.logger ?? false }
      : { logStream: options.logStream },
  );
  await app.listen(0, '127.0.0.1');
  const url = `${await app.getUrl()}/graphql`.replace('[::1]', '127.0.0.1');
  return {
    app,
    url,
    config,
    async gql(query, variables, token) {
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
        body: JSON.stringify({ query, variables }),
      });
      return (await response.json()) as GraphqlResponse<never>;
    },
    async close() {
      await app.close();
      await drop();
    },
  };
}

const redisUrl = process.env.PARLEY_TEST_REDIS_URL;

/** Why suites of two instances (one PostgreSQL database, Redis between them) skip in this run. */
export const twoInstancesSkipReason =
  e2eSkipReason ??
  (testDatabase !== 'postgres'
    ? 'two instances need a shared PostgreSQL; they run in e2e:postgres'
    : redisUrl === undefined
      ? 'PARLEY_TEST_REDIS_URL is not set'
      : undefined);

/** Two instances on one fresh PostgreSQL database, joined by Redis pub/sub, sharing a token secret. */
export async function startTwoInstances(
  overrides: Partial<Config> = {},
): Promise<[TestApp, TestApp]> {
  const a = await startTestApp({ ...overrides, redisUrl: redisUrl ?? null });
  const b = await startTestApp({
    ...overrides,
    redisUrl: redisUrl ?? null,
    database: a.config.database,
    tokenSecret: a.config.tokenSecret,
  });
  return [a, b];
}
