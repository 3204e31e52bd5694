import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DataSource } from 'typeorm';
import type { RateLimitsConfig } from '../apps/server/src/config/config.js';
import { RateLimitService } from '../apps/server/src/rate-limits/rate-limit.service.js';
import { dataOf, errorCodeOf } from './support/graphql.js';
import { ParleyDevice } from './support/parley-client.js';
import { type OwnRedis, ownRedisSkipReason, startOwnRedis } from './support/own-redis.js';
import {
  describeE2E,
  e2eSkipReason,
  type GraphqlResponse,
  startTestApp,
  startTwoInstances,
  type TestApp,
  testConfig,
  testDatabase,
  twoInstancesSkipReason,
} from './support/test-app.js';

const PASSWORD = 'correct horse battery';
const CREDENTIALS = `mutation ($input: CredentialsInput!) { %s(input: $input) { token user { id } } }`;

interface AuthPayload {
  token: string;
  user: { id: string };
}

/** Rate limits for a suite: the defaults, a key prefix of its own, and the overrides. */
function rates(overrides: Partial<RateLimitsConfig>): RateLimitsConfig {
  return {
    ...testConfig().rateLimits,
    keyPrefix: `parley-test-${randomBytes(6).toString('hex')}`,
    ...overrides,
  };
}

/** Posts one operation as a client at `address` behind the one proxy the app trusts. */
async function gqlFrom<T>(
  app: TestApp,
  address: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<GraphqlResponse<T>> {
  const response = await fetch(app.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as GraphqlResponse<T>;
}

const credentials = (
  app: TestApp,
  address: string,
  op: 'signUp' | 'signIn',
  username: string,
  password = PASSWORD,
) =>
  gqlFrom<Record<string, AuthPayload>>(app, address, CREDENTIALS.replace('%s', op), {
    input: { username, password },
  });

const retryAfterOf = (response: GraphqlResponse<unknown>): unknown =>
  response.errors?.[0]?.extensions?.retryAfterSeconds;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Opens a graphql-ws socket as a client at `address`; how it ended up: acknowledged, or closed. */
async function connectFrom(
  app: TestApp,
  address: string,
  token?: string,
): Promise<{ acked: boolean; closeCode?: number; closeReason?: string }> {
  const socket = new WebSocket(app.url.replace(/^http/, 'ws'), 'graphql-transport-ws', {
    headers: { 'x-forwarded-for': address },
  });
  try {
    return await new Promise((resolve, reject) => {
      socket.on('open', () => {
        socket.send(
          JSON.stringify({
            type: 'connection_init',
            payload: token === undefined ? {} : { authorization: `Bearer ${token}` },
          }),
        );
      });
      socket.on('message', (data: Buffer) => {
        const message = JSON.parse(data.toString()) as { type: string };
        if (message.type === 'connection_ack') resolve({ acked: true });
      });
      socket.on('close', (closeCode: number, reason: Buffer) => {
        resolve({ acked: false, closeCode, closeReason: reason.toString() });
      });
      socket.on('error', reject);
    });
  } finally {
    socket.close();
  }
}

let addressCounter = 0;
/** A fresh client address (documentation range), so that each case counts alone. */
const freshAddress = () => {
  addressCounter += 1;
  return `198.51.100.${addressCounter}`;
};
const freshName = (prefix: string) => `${prefix}_${randomBytes(4).toString('hex')}`;

describeE2E('rate limits', () => {
  describe('per client address and per username (behind one trusted proxy)', () => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp({
        trustProxyHops: 1,
        rateLimits: rates({
          signInsPerAddressPerMinute: 20,
          signInFreeFailures: 3,
          signInBackoffSeconds: 1,
          signInMaxBackoffSeconds: 60,
          signUpsPerAddressPerHour: 3,
          connectionsPerAddressPerMinute: 3,
        }),
      });
    });
    afterAll(async () => {
      await app.close();
    });

    it('counts where the shared limits are kept: PostgreSQL, or memory on PGlite', async () => {
      const service = app.app.get(RateLimitService);
      expect(service.store).toBe(testDatabase === 'postgres' ? 'postgres' : 'memory');
      dataOf(await credentials(app, freshAddress(), 'signUp', freshName('stored')));
      if (testDatabase === 'postgres') {
        const rows: { count: string }[] = await app.app
          .get(DataSource)
          .query(`SELECT count(*) AS "count" FROM "rate_limits" WHERE "key" LIKE $1`, [
            `${app.config.rateLimits.keyPrefix}:sign-up-address:%`,
          ]);
        expect(Number(rows[0]?.count)).toBe(1);
        // Unlogged: counters are not worth a WAL flush per request (see its migration).
        const table: { relpersistence: string }[] = await app.app
          .get(DataSource)
          .query(`SELECT "relpersistence" FROM pg_class WHERE "relname" = 'rate_limits'`);
        expect(table[0]?.relpersistence).toBe('u');
      }
    });

    it('locks a flooded username out for ever longer while another user still signs in', async () => {
      const victim = freshName('victim');
      const bystander = freshName('bystander');
      dataOf(await credentials(app, freshAddress(), 'signUp', victim));
      dataOf(await credentials(app, freshAddress(), 'signUp', bystander));
      const attacker = freshAddress();
      const wrong = () => credentials(app, attacker, 'signIn', victim, 'wrong password!');

      // Three free failures; the third locks the username for 1 s, then 2 s, then 4 s.
      for (let i = 0; i < 3; i++) expect(errorCodeOf(await wrong())).toBe('UNAUTHENTICATED');
      const seen: unknown[] = [];
      for (const lockout of [1, 2, 4]) {
        const refused = await wrong();
        expect(errorCodeOf(refused)).toBe('RATE_LIMITED');
        seen.push(retryAfterOf(refused));
        // Even the right password waits: the lock is on the username, whoever asks.
        expect(errorCodeOf(await credentials(app, freshAddress(), 'signIn', victim))).toBe(
          'RATE_LIMITED',
        );
        // Another user, from the attacker's own address, is not held up.
        dataOf(await credentials(app, attacker, 'signIn', bystander));
        await sleep(lockout * 1000 + 100);
        expect(errorCodeOf(await wrong())).toBe('UNAUTHENTICATED');
      }
      expect(seen).toEqual([1, 2, 4]);
      console.log(`signIn flood: lock-outs seen as retryAfterSeconds ${JSON.stringify(seen)}`);

      // After the lock-out, the right password works and forgets the failures.
      await sleep(8100);
      dataOf(await credentials(app, freshAddress(), 'signIn', victim));
      expect(errorCodeOf(await wrong())).toBe('UNAUTHENTICATED');
    }, 60_000);

    it('limits sign-in attempts per address, for any usernames', async () => {
      const address = freshAddress();
      for (let i = 0; i < 20; i++) {
        expect(errorCodeOf(await credentials(app, address, 'signIn', freshName('nobody')))).toBe(
          'UNAUTHENTICATED',
        );
      }
      const refused = await credentials(app, address, 'signIn', freshName('nobody'));
      expect(errorCodeOf(refused)).toBe('RATE_LIMITED');
      expect(retryAfterOf(refused)).toBeGreaterThan(0);
      expect(retryAfterOf(refused)).toBeLessThanOrEqual(60);
      expect(errorCodeOf(await credentials(app, freshAddress(), 'signIn', freshName('x')))).toBe(
        'UNAUTHENTICATED',
      );
    });

    it('limits sign-ups per address, also within one aliased request, and creates nothing refused', async () => {
      const address = freshAddress();
      const names = Array.from({ length: 5 }, () => freshName('many'));
      const aliased = await gqlFrom<Record<string, AuthPayload | null>>(
        app,
        address,
        `mutation { ${names
          .map(
            (name, i) =>
              `a${i}: signUp(input: { username: "${name}", password: "${PASSWORD}" }) { token }`,
          )
          .join(' ')} }`,
      );
      // The fourth is refused, and with it the rest of the request (signUp is non-null: the
      // error takes the whole data with it, and GraphQL runs no later mutation field).
      expect(aliased.errors?.map((error) => error.extensions?.code)).toEqual(['RATE_LIMITED']);
      expect(aliased.errors?.[0]).toMatchObject({ path: ['a3'] });
      const retry = Number(aliased.errors?.[0]?.extensions?.retryAfterSeconds);
      expect(retry).toBeGreaterThan(3500);
      expect(retry).toBeLessThanOrEqual(3600);
      // Exactly the first three exist.
      const signedIn = await Promise.all(
        names.map(async (name) => (await credentials(app, freshAddress(), 'signIn', name)).errors),
      );
      expect(signedIn.map((errors) => errors?.[0]?.extensions?.code ?? 'OK')).toEqual([
        'OK',
        'OK',
        'OK',
        'UNAUTHENTICATED',
        'UNAUTHENTICATED',
      ]);
      const again = await credentials(app, address, 'signUp', freshName('again'));
      expect(errorCodeOf(again)).toBe('RATE_LIMITED');
      // Another address signs up as usual.
      dataOf(await credentials(app, freshAddress(), 'signUp', freshName('other')));
    });

    it('limits new graphql-ws connections per address, token or not', async () => {
      const address = freshAddress();
      const { signUp } = dataOf(
        await credentials(app, freshAddress(), 'signUp', freshName('connector')),
      );
      const token = signUp?.token;
      for (let i = 0; i < 3; i++) expect((await connectFrom(app, address, token)).acked).toBe(true);
      const refused = await connectFrom(app, address, token);
      expect(refused).toMatchObject({ acked: false, closeCode: 4429 });
      expect(refused.closeReason).toMatch(/^Rate limited; retry after \d+ s$/);
      // Operators see it (socket refusals are not GraphQL responses, so they are counted here).
      const metrics = await (await fetch(app.url.replace(/\/graphql$/, '/metrics'))).text();
      expect(metrics).toMatch(/^parley_rate_limit_refusals_total\{scope="connection"\} 1$/m);
      expect(await connectFrom(app, freshAddress(), token)).toEqual({ acked: true });
    });
  });

  describe('per device and per user', () => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp({
        rateLimits: rates({
          messagesPerDevicePerMinute: 3,
          commitBundlesPerDevicePerMinute: 2,
          keyPackageUploadsPerDevicePerMinute: 2,
          subscriptionsPerUserPerMinute: 2,
          connectionsPerUserPerMinute: 4,
        }),
      });
    });
    afterAll(async () => {
      await app.close();
    });

    it('limits sendMessage per device and stores nothing refused', async () => {
      const ann = await ParleyDevice.create(app);
      const { conversationId, group } = await ann.createConversation();
      for (let i = 0; i < 3; i++) await ann.say(group, conversationId, `message ${i}`);
      const refused = await ann.send(conversationId, await group.encrypt('one too many'));
      expect(errorCodeOf(refused)).toBe('RATE_LIMITED');
      expect(retryAfterOf(refused)).toBeGreaterThan(0);
      expect(retryAfterOf(refused)).toBeLessThanOrEqual(60);
      expect((await ann.entries(conversationId)).map((entry) => entry.kind)).toEqual([
        'APPLICATION',
        'APPLICATION',
        'APPLICATION',
      ]);
      // Another device of the same user has its own allowance.
      const other = await ParleyDevice.another(app, ann);
      const second = await other.createConversation();
      await other.say(second.group, second.conversationId, 'my own count');
    });

    it('limits submitCommitBundle and key-package uploads per device', async () => {
      const ben = await ParleyDevice.create(app);
      const { conversationId, group } = await ben.createConversation();
      for (let i = 0; i < 2; i++) {
        dataOf(await ben.submit(conversationId, await group.update()));
        group.confirmCommit();
      }
      const refused = await ben.submit(conversationId, await group.update());
      expect(errorCodeOf(refused)).toBe('RATE_LIMITED');
      expect(retryAfterOf(refused)).toBeGreaterThan(0);

      await ben.uploadKeyPackages(1);
      await ben.uploadKeyPackages(1);
      const third = await ben.gql(
        `mutation ($deviceId: ID!, $keyPackages: [Bytes!]!) {
          uploadKeyPackages(input: { deviceId: $deviceId, keyPackages: $keyPackages }) { available }
        }`,
        {
          keyPackages: (await ben.mls.keyPackages(1)).map((kp) =>
            Buffer.from(kp).toString('base64'),
          ),
        },
      );
      expect(errorCodeOf(third)).toBe('RATE_LIMITED');
    });

    it('limits new subscriptions and connections per user', async () => {
      const cat = await ParleyDevice.create(app);
      expect(await cat.subscribeAs(cat.deviceId)).toEqual([]);
      expect(await cat.subscribeAs(cat.deviceId)).toEqual([]);
      const refused = (await cat.subscribeAs(cat.deviceId)) as {
        extensions?: Record<string, unknown>;
      }[];
      expect(refused.map((error) => error.extensions?.code)).toEqual(['RATE_LIMITED']);
      expect(refused[0]?.extensions?.retryAfterSeconds).toBeGreaterThan(0);
      // Another user subscribes as usual.
      const dan = await ParleyDevice.create(app);
      expect(await dan.subscribeAs(dan.deviceId)).toEqual([]);

      // Three connections so far; a fourth is let in, a fifth is closed.
      expect((await connectFrom(app, '127.0.0.1', cat.token)).acked).toBe(true);
      expect(await connectFrom(app, '127.0.0.1', cat.token)).toMatchObject({
        acked: false,
        closeCode: 4429,
      });
      expect((await connectFrom(app, '127.0.0.1', dan.token)).acked).toBe(true);
    });
  });
});

const ownRedisSkip = e2eSkipReason ?? ownRedisSkipReason();
if (ownRedisSkip !== undefined)
  console.warn(`frozen-Redis rate-limit case skipped: ${ownRedisSkip}`);

describe.skipIf(ownRedisSkip !== undefined)('rate limits while Redis is frozen', () => {
  let redis: OwnRedis;
  let app: TestApp;
  beforeAll(async () => {
    redis = await startOwnRedis();
    app = await startTestApp({
      redisUrl: redis.url,
      trustProxyHops: 1,
      rateLimits: rates({ signUpsPerAddressPerHour: 2 }),
    });
  });
  afterAll(async () => {
    redis.destroy();
    await app.close();
  });

  it('neither stalls nor refuses: each instance counts in memory until Redis answers', async () => {
    expect(app.app.get(RateLimitService).store).toBe('redis');
    const timed = async (address: string) => {
      const started = Date.now();
      const response = await credentials(app, address, 'signUp', freshName('frozen'));
      return { response, ms: Date.now() - started };
    };
    const healthy = await timed(freshAddress());
    dataOf(healthy.response);
    redis.freeze();
    try {
      const address = freshAddress();
      const first = await timed(address);
      const second = await timed(address);
      dataOf(first.response);
      dataOf(second.response);
      // The limit still holds, counted in this instance's memory.
      const third = await timed(address);
      expect(errorCodeOf(third.response)).toBe('RATE_LIMITED');
      console.log(
        `sign-up with Redis frozen: ${first.ms} ms, ${second.ms} ms, refused in ${third.ms} ms (healthy: ${healthy.ms} ms)`,
      );
      // At most the 250 ms command timeout more than with a healthy Redis (and the hash).
      for (const { ms } of [first, second, third]) expect(ms).toBeLessThan(healthy.ms + 1000);
    } finally {
      redis.thaw();
    }
  }, 60_000);
});

if (twoInstancesSkipReason !== undefined) {
  console.warn(`rate limits across two instances skipped: ${twoInstancesSkipReason}`);
}

describe.skipIf(twoInstancesSkipReason !== undefined)(
  'rate limits across two instances (Redis)',
  () => {
    let a: TestApp;
    let b: TestApp;
    beforeAll(async () => {
      const rateLimits = rates({ signUpsPerAddressPerHour: 2, signInFreeFailures: 2 });
      [a, b] = await startTwoInstances({ trustProxyHops: 1, rateLimits });
    });
    afterAll(async () => {
      await b.close();
      await a.close();
    });

    it('counts sign-ups and sign-in failures once for both instances', async () => {
      expect(a.app.get(RateLimitService).store).toBe('redis');
      const address = freshAddress();
      const victim = freshName('shared');
      dataOf(await credentials(a, address, 'signUp', victim));
      dataOf(await credentials(b, address, 'signUp', freshName('shared')));
      expect(errorCodeOf(await credentials(a, address, 'signUp', freshName('shared')))).toBe(
        'RATE_LIMITED',
      );
      expect(errorCodeOf(await credentials(b, address, 'signUp', freshName('shared')))).toBe(
        'RATE_LIMITED',
      );

      const wrong = (app: TestApp) =>
        credentials(app, freshAddress(), 'signIn', victim, 'wrong password!');
      expect(errorCodeOf(await wrong(a))).toBe('UNAUTHENTICATED');
      expect(errorCodeOf(await wrong(b))).toBe('UNAUTHENTICATED');
      const locked = await wrong(a);
      expect(errorCodeOf(locked)).toBe('RATE_LIMITED');
      expect(retryAfterOf(locked)).toBe(1);
    });
  },
);
