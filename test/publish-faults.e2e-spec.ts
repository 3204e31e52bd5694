import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EventsUnavailableError,
  SlowConsumerError,
} from '../apps/server/src/events/events.errors.js';
import { EventBus } from '../apps/server/src/events/event-bus.js';
import { dataOf } from './support/graphql.js';
import type { MlsGroup } from '@parley/mls-member';
import { type OwnRedis, ownRedisSkipReason, startOwnRedis } from './support/own-redis.js';
import { ParleyDevice, type Subscription } from './support/parley-client.js';
import {
  describeE2E,
  e2eSkipReason,
  startTestApp,
  type TestApp,
  testDatabase,
} from './support/test-app.js';

const redisSkipReason = e2eSkipReason ?? ownRedisSkipReason();
if (redisSkipReason !== undefined) console.warn(`Redis fault suite skipped: ${redisSkipReason}`);

async function eventually(
  condition: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<number> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return Date.now() - started;
}

/** Alice and Bob in one conversation, both joined. */
async function pair(app: TestApp) {
  const alice = await ParleyDevice.create(app);
  const bob = await ParleyDevice.create(app);
  await bob.uploadKeyPackages(1);
  const { conversationId, group } = await alice.createConversation();
  dataOf(
    await alice.submit(conversationId, await group.addMembers(await alice.claim([bob.userId]))),
  );
  group.confirmCommit();
  await bob.joinFromWelcome();
  return { alice, bob, conversationId, group };
}

/** The first error code a subscription ended with (graphql-ws hands over the error list). */
function endingCode(subscription: Subscription): unknown {
  const [first] = subscription.errors;
  const list = Array.isArray(first) ? (first as { extensions?: { code?: unknown } }[]) : [];
  return list[0]?.extensions?.code;
}

interface Health {
  status: string;
  info?: Record<string, Record<string, unknown>>;
}

async function health(app: TestApp): Promise<{ http: number; body: Health }> {
  const response = await fetch(app.url.replace('/graphql', '/health'));
  return { http: response.status, body: (await response.json()) as Health };
}

/** Milliseconds at the given quantile (0–1) of `samples`. */
function quantile(samples: number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

/** Encrypts `count` messages first, then sends them one after another; the latency of each. */
async function timedSends(
  alice: ParleyDevice,
  group: MlsGroup,
  conversationId: string,
  label: string,
  count: number,
): Promise<{ ms: number[]; seqs: number[] }> {
  const bytes: Uint8Array[] = [];
  for (let i = 0; i < count; i += 1) bytes.push(await group.encrypt(`${label} ${i}`));
  const ms: number[] = [];
  const seqs: number[] = [];
  for (const message of bytes) {
    const started = performance.now();
    const response = await alice.send(conversationId, message);
    ms.push(performance.now() - started);
    seqs.push(dataOf(response).sendMessage.seq);
  }
  return { ms, seqs };
}

describe.skipIf(redisSkipReason !== undefined)(
  `publishing never blocks writing (${testDatabase})`,
  () => {
    let redis: OwnRedis;
    let app: TestApp;
    beforeAll(async () => {
      redis = await startOwnRedis();
      app = await startTestApp({ redisUrl: redis.url });
    });
    afterAll(async () => {
      redis.thaw();
      await app.close().catch(() => undefined);
      redis.destroy();
    });

    it('keeps sendMessage fast with Redis frozen, tells live subscribers EVENTS_UNAVAILABLE, loses nothing', async () => {
      const { alice, bob, conversationId, group } = await pair(app);
      let live = await bob.subscribe();
      const up = await health(app);
      expect(up.http).toBe(200);
      expect(up.body.info?.events).toMatchObject({ status: 'up', bus: 'up', backend: 'redis' });

      const healthy = await timedSends(alice, group, conversationId, 'healthy', 100);
      const lastHealthy = healthy.seqs.at(-1);
      await live.waitFor((event) => event.entry?.seq === lastHealthy);
      await live.close();
      live = await bob.subscribe();

      redis.freeze();
      const frozenAt = Date.now();
      // Watched while the sends go on: how soon after the freeze the subscriber is told.
      const told = eventually(() => live.errors.length > 0, 10_000);
      const frozen = await timedSends(alice, group, conversationId, 'frozen', 100);
      const frozenFor = Date.now() - frozenAt;
      const p = (ms: number[], q: number) => quantile(ms, q).toFixed(1);
      console.log(
        `sendMessage latency, Redis healthy: p50 ${p(healthy.ms, 0.5)} ms, p99 ${p(healthy.ms, 0.99)} ms, max ${p(healthy.ms, 1)} ms; ` +
          `Redis frozen (SIGSTOP): p50 ${p(frozen.ms, 0.5)} ms, p99 ${p(frozen.ms, 0.99)} ms, max ${p(frozen.ms, 1)} ms ` +
          `(100 sends each, one after another, ${frozenFor} ms in all while frozen)`,
      );
      expect(quantile(frozen.ms, 0.99)).toBeLessThan(1000);

      // The subscriber hears that live events stopped, in a typed way, within the probe's reach.
      const endedIn = await told;
      expect(endingCode(live)).toBe('EVENTS_UNAVAILABLE');
      console.log(`live subscriber told EVENTS_UNAVAILABLE ${endedIn} ms after SIGSTOP`);
      const down = await health(app);
      expect(down.http).toBe(200);
      expect(down.body.status).toBe('degraded');
      expect(down.body.info?.events).toMatchObject({ bus: 'down', backend: 'redis' });
      // While Redis hangs, a new subscription is refused with the same code, at once.
      const refused = await bob.subscribeAs(bob.deviceId);
      expect(refused).toHaveLength(1);
      expect((refused[0] as { extensions?: { code?: unknown } }).extensions?.code).toBe(
        'EVENTS_UNAVAILABLE',
      );

      redis.thaw();
      const backIn = await eventually(
        async () => (await health(app)).body.info?.events?.bus !== 'down',
      );
      console.log(`bus up again ${backIn} ms after SIGCONT`);
      // Reconnected, the subscriber catches up from the log: every message is there, in order.
      live = await bob.subscribe();
      const entries = await bob.entries(conversationId);
      const seqs = entries.map((entry) => entry.seq);
      for (const seq of [...healthy.seqs, ...frozen.seqs]) expect(seqs).toContain(seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      // And live delivery works again.
      const after = await alice.say(group, conversationId, 'after the thaw');
      await live.waitFor((event) => event.entry?.seq === after);
      await live.close();
    });

    it('keeps sending when Redis is killed, and recovers when it comes back', async () => {
      const { alice, bob, conversationId, group } = await pair(app);
      const live = await bob.subscribe();
      redis.kill();
      const sends = await timedSends(alice, group, conversationId, 'killed', 30);
      console.log(
        `sendMessage latency, Redis killed: p50 ${quantile(sends.ms, 0.5).toFixed(1)} ms, p99 ${quantile(sends.ms, 0.99).toFixed(1)} ms`,
      );
      expect(quantile(sends.ms, 0.99)).toBeLessThan(1000);
      await eventually(() => live.errors.length > 0, 5_000);
      expect(endingCode(live)).toBe('EVENTS_UNAVAILABLE');
      const down = await health(app);
      expect(down.http).toBe(200);
      expect(down.body.info?.events).toMatchObject({ bus: 'down' });

      await redis.start();
      await eventually(async () => (await health(app)).body.info?.events?.bus !== 'down', 15_000);
      const again = await bob.subscribe();
      const seqs = (await bob.entries(conversationId)).map((entry) => entry.seq);
      for (const seq of sends.seqs) expect(seqs).toContain(seq);
      const after = await alice.say(group, conversationId, 'after the restart');
      await again.waitFor((event) => event.entry?.seq === after);
      await again.close();
    });
  },
);

describeE2E(`typed live-stream errors over graphql-ws (${testDatabase})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('ends a live stream with SLOW_CONSUMER or EVENTS_UNAVAILABLE as such, not INTERNAL_SERVER_ERROR', async () => {
    const { bob } = await pair(app);
    // The bus ends streams itself (its own specs show when); what is tested here is that the code
    // survives the way to a graphql-ws client.
    // interruptStreams is protected: reached here on purpose, as the bus itself would call it.
    const bus = app.app.get<EventBus, { interruptStreams(error: Error): void }>(EventBus);
    for (const [error, code] of [
      [new SlowConsumerError(1000), 'SLOW_CONSUMER'],
      [new EventsUnavailableError('Lost the connection to Redis'), 'EVENTS_UNAVAILABLE'],
      [new (class extends Error {})('plain'), 'INTERNAL_SERVER_ERROR'],
    ] as const) {
      const live = await bob.subscribe();
      bus.interruptStreams(error);
      await eventually(() => live.errors.length > 0, 5_000);
      expect(endingCode(live)).toBe(code);
      await live.close();
    }
  });
});
