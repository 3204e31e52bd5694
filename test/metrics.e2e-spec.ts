import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MetricsServer } from '../apps/server/src/metrics/metrics-server.js';
import { b64, dataOf, errorCodeOf } from './support/graphql.js';
import { ParleyDevice } from './support/parley-client.js';
import {
  describeE2E,
  startTestApp,
  type TestApp,
  testConfig,
  testDatabase,
} from './support/test-app.js';

/** One sample of a scrape: its metric name, labels and value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (the subset prom-client writes). */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key as string] = value as string;
    }
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return samples;
}

/** A scrape, read as the sum of the samples of `name` that carry the given labels. */
class Scrape {
  constructor(readonly samples: Sample[]) {}

  value(name: string, labels: Record<string, string> = {}): number {
    return this.samples
      .filter(
        (sample) =>
          sample.name === name &&
          Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
      )
      .reduce((sum, sample) => sum + sample.value, 0);
  }

  has(name: string): boolean {
    return this.samples.some((sample) => sample.name === name);
  }
}

async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return new Scrape(parse(await response.text()));
}

const metricsUrl = (app: TestApp) => app.url.replace(/\/graphql$/, '/metrics');

const SEND = `mutation ($deviceId: ID!, $conversationId: ID!, $message: Bytes!) {
  sendMessage(input: { deviceId: $deviceId, conversationId: $conversationId, message: $message }) { seq }
}`;

describeE2E(`metrics (${testDatabase})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    // One claim a minute, so that the second claim is refused (a rate-limit refusal to count).
    const { limits } = testConfig();
    app = await startTestApp({ limits: { ...limits, claimsPerMinute: 1 } });
  });
  afterAll(async () => {
    await app.close();
  });

  it('serves /metrics without a token, and its counters follow what clients do', async () => {
    const before = await scrape(metricsUrl(app));
    // Process metrics come with the app's.
    expect(before.has('process_cpu_user_seconds_total')).toBe(true);
    expect(before.has('nodejs_eventloop_lag_seconds')).toBe(true);
    expect(before.value('parley_db_pool_connections', { state: 'open' })).toBeGreaterThanOrEqual(1);

    // Sign-ups, a two-member conversation, a live subscriber, two messages.
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    await bob.uploadKeyPackages(1);
    const { conversationId, group } = await alice.createConversation();
    const keyPackages = await alice.claim([bob.userId]);
    dataOf(await alice.submit(conversationId, await group.addMembers(keyPackages)));
    group.confirmCommit();
    await bob.joinFromWelcome();
    const live = await bob.subscribe();
    const during = await scrape(metricsUrl(app));
    expect(during.value('parley_live_sockets')).toBe(1);
    expect(during.value('parley_live_subscriptions')).toBe(1);

    const first = await alice.say(group, conversationId, 'one');
    const second = await alice.say(group, conversationId, 'two');
    await live.waitFor((event) => event.entry?.seq === second);
    // The same bytes again: answered from the log, not appended.
    const bytes = await group.encrypt('three');
    dataOf(await alice.gql(SEND, { conversationId, message: b64(bytes) }));
    dataOf(await alice.gql(SEND, { conversationId, message: b64(bytes) }));
    expect(first).toBeLessThan(second);

    // Errors: a stranger's message, a second claim within the minute.
    const stranger = await ParleyDevice.create(app);
    expect(errorCodeOf(await stranger.gql(SEND, { conversationId, message: b64(bytes) }))).toBe(
      'NOT_A_MEMBER',
    );
    expect(
      errorCodeOf(
        await alice.gql(
          `mutation ($deviceId: ID!, $userIds: [ID!]!) {
            claimKeyPackages(input: { deviceId: $deviceId, userIds: $userIds }) { keyPackages { keyPackage } }
          }`,
          { userIds: [bob.userId] },
        ),
      ),
    ).toBe('RATE_LIMITED');
    // Not even a valid document: counted, with Apollo's code, under no operation.
    expect(errorCodeOf(await app.gql('{ nope'))).toBe('GRAPHQL_PARSE_FAILED');

    await live.close();
    const after = await scrape(metricsUrl(app));
    const delta = (name: string, labels: Record<string, string> = {}) =>
      after.value(name, labels) - before.value(name, labels);

    const ok = { type: 'mutation', code: 'OK' };
    expect(delta('parley_graphql_requests_total', { ...ok, operation: 'signUp' })).toBe(3);
    expect(delta('parley_graphql_requests_total', { ...ok, operation: 'sendMessage' })).toBe(4);
    expect(delta('parley_graphql_requests_total', { ...ok, operation: 'claimKeyPackages' })).toBe(
      1,
    );
    expect(
      delta('parley_graphql_requests_total', { operation: 'sendMessage', code: 'NOT_A_MEMBER' }),
    ).toBe(1);
    expect(
      delta('parley_graphql_errors_total', { operation: 'sendMessage', code: 'NOT_A_MEMBER' }),
    ).toBe(1);
    expect(
      delta('parley_graphql_requests_total', {
        operation: 'claimKeyPackages',
        code: 'RATE_LIMITED',
      }),
    ).toBe(1);
    expect(delta('parley_rate_limit_refusals_total', { scope: 'claimKeyPackages' })).toBe(1);
    expect(
      delta('parley_graphql_errors_total', {
        operation: '(unresolved)',
        code: 'GRAPHQL_PARSE_FAILED',
      }),
    ).toBe(1);
    // Latency: one observation per operation.
    expect(
      delta('parley_graphql_request_duration_seconds_count', {
        type: 'mutation',
        operation: 'sendMessage',
      }),
    ).toBe(5);
    // The subscription over graphql-ws, counted when it started.
    expect(
      delta('parley_graphql_requests_total', {
        type: 'subscription',
        operation: 'events',
        code: 'OK',
      }),
    ).toBe(1);

    // Three new messages (the retry stored nothing), in at least one batch.
    expect(delta('parley_messages_appended_total')).toBe(3);
    expect(delta('parley_append_batch_size_count')).toBeGreaterThanOrEqual(3);
    // Four sends reached the appender (and perhaps the stranger's, refused inside its batch).
    expect(delta('parley_append_batch_size_sum')).toBeGreaterThanOrEqual(4);
    // Every message, the commit and the roster and welcome events went out on the bus.
    expect(
      delta('parley_event_bus_publish_duration_seconds_count', { outcome: 'ok' }),
    ).toBeGreaterThanOrEqual(4);
    expect(delta('parley_event_bus_publish_failures_total')).toBe(0);
    expect(after.value('parley_event_bus_state', { state: 'up' })).toBe(1);
    expect(delta('parley_event_bus_lost_total')).toBe(0);

    // The socket closed: the gauges come back down (the server hears of it shortly after).
    await expect
      .poll(async () => {
        const now = await scrape(metricsUrl(app));
        return [now.value('parley_live_sockets'), now.value('parley_live_subscriptions')];
      })
      .toEqual([0, 0]);
  });
});

describeE2E(`metrics of graphql-ws (${testDatabase})`, () => {
  it('counts an operation refused before it ran under the code the client saw', async () => {
    const app = await startTestApp();
    const client = createClient({
      url: app.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: async () => ({
        authorization: `Bearer ${(await ParleyDevice.create(app)).token}`,
      }),
      retryAttempts: 0,
    });
    try {
      const before = await scrape(metricsUrl(app));
      const errors = await new Promise<unknown>((resolve) => {
        client.subscribe(
          { query: 'subscription { noSuchField }' },
          { next: () => undefined, error: resolve, complete: () => undefined },
        );
      });
      const code = (errors as { extensions?: { code?: string } }[])[0]?.extensions?.code;
      expect(code).toMatch(/^[A-Z_]+$/);
      const after = await scrape(metricsUrl(app));
      const labels = { operation: '(unresolved)', code: code ?? '' };
      const delta = (name: string) => after.value(name, labels) - before.value(name, labels);
      expect(delta('parley_graphql_requests_total')).toBe(1);
      expect(delta('parley_graphql_errors_total')).toBe(1);
      expect(after.value('parley_live_subscriptions')).toBe(0);
    } finally {
      await client.dispose();
      await app.close();
    }
  });
});

describeE2E(`PARLEY_METRICS (${testDatabase})`, () => {
  it('off: there is no /metrics', async () => {
    const app = await startTestApp({ metrics: { kind: 'off' } });
    try {
      expect((await fetch(metricsUrl(app))).status).toBe(404);
      expect(app.app.get(MetricsServer).url).toBeNull();
    } finally {
      await app.close();
    }
  });

  it('an address: /metrics on a listener of its own, not on the API port', async () => {
    const app = await startTestApp({ metrics: { kind: 'listen', host: '127.0.0.1', port: 0 } });
    let url: string | null;
    try {
      expect((await fetch(metricsUrl(app))).status).toBe(404);
      url = app.app.get(MetricsServer).url;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      await ParleyDevice.create(app);
      const scraped = await scrape(url ?? '');
      expect(
        scraped.value('parley_graphql_requests_total', {
          type: 'mutation',
          operation: 'signUp',
          code: 'OK',
        }),
      ).toBe(1);
      expect((await fetch((url ?? '').replace(/metrics$/, 'other'))).status).toBe(404);
    } finally {
      await app.close();
    }
    // Closed with the app.
    await expect(fetch(url ?? '')).rejects.toThrow();
  });
});
