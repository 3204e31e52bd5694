import { connect, type Socket } from 'node:net';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { errorCodeOf, signUpWithDevice } from './support/graphql.js';
import { EVENTS_SUBSCRIPTION, ParleyDevice } from './support/parley-client.js';
import { describeE2E, startTestApp, testConfig, type TestApp } from './support/test-app.js';

/** Milliseconds a promise took, with its value. */
async function timed<T>(work: Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work;
  return { ms: performance.now() - started, value };
}

/** Resolves when the server closes the socket (or after `ms`, with false). */
function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      resolve(false);
    }, ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    // A paused socket never sees the server's end, so it would never close.
    socket.resume();
  });
}

/** A raw graphql-ws socket: the close code and reason the server gave, after `init`. */
function wsClose(
  url: string,
  init: Record<string, unknown> | null,
): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws');
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error('the server kept the socket open'));
    }, 5_000);
    socket.on('open', () => {
      if (init !== null) socket.send(JSON.stringify({ type: 'connection_init', payload: init }));
    });
    socket.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
    socket.on('error', reject);
  });
}

describeE2E('abuse', () => {
  let app: TestApp;
  const defaults = testConfig();
  beforeAll(async () => {
    app = await startTestApp({
      http: {
        ...defaults.http,
        headersTimeoutMs: 1_000,
        requestTimeoutMs: 2_000,
        connectionsCheckIntervalMs: 250,
      },
    });
  });
  afterAll(async () => {
    await app.close();
  });

  it('refuses a 50,000-alias request and a 10,000-fragment chain in under a second, /health staying fast', async () => {
    const ana = await signUpWithDevice(app);
    const aliases = `{ ${Array.from({ length: 50_000 }, (_, i) => `a${String(i)}: __typename`).join(' ')} }`;
    const fragments = [
      '{ ...F0 }',
      ...Array.from(
        { length: 10_000 },
        (_, i) => `fragment F${String(i)} on Query { ...F${String(i + 1)} }`,
      ),
      'fragment F10000 on Query { __typename }',
    ].join('\n');
    for (const [what, query] of [
      ['aliases', aliases],
      ['fragments', fragments],
    ] as const) {
      const health = timed(fetch(app.url.replace('/graphql', '/health')));
      const { ms, value } = await timed(app.gql(query, {}, ana.token));
      expect(errorCodeOf(value), what).toBe('QUERY_TOO_COMPLEX');
      expect(ms, what).toBeLessThan(1_000);
      const probe = await health;
      expect(probe.value.status).toBe(200);
      expect(probe.ms, `/health during ${what}`).toBeLessThan(1_000);
      console.log(
        `abuse: ${what} refused in ${ms.toFixed(0)} ms; /health ${probe.ms.toFixed(0)} ms`,
      );
    }
  });

  it('bounds aliases, root fields and directives at validation (depth and cost: see query-limits.spec)', async () => {
    const ana = await signUpWithDevice(app);
    const cases: [string, string][] = [
      [
        'aliases',
        `{ me { ${Array.from({ length: 60 }, (_, i) => `m${String(i)}: id`).join(' ')} } }`,
      ],
      ['root fields', `{ ${Array.from({ length: 40 }, () => 'me { id }').join(' ')} }`],
      ['directives', `{ me { ${'... @include(if: true) { id } '.repeat(60)} } }`],
    ];
    for (const [what, query] of cases) {
      expect(errorCodeOf(await app.gql(query, {}, ana.token)), what).toBe('QUERY_TOO_COMPLEX');
    }
  });

  it('applies the same limits to graphql-ws operations', async () => {
    const ana = await ParleyDevice.create(app);
    const client = createClient({
      url: app.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${ana.token}` },
      retryAttempts: 0,
    });
    try {
      const aliased = `subscription ($deviceId: ID!) { ${Array.from(
        { length: 200 },
        (_, i) => `e${String(i)}: events(deviceId: $deviceId) { __typename }`,
      ).join(' ')} }`;
      const errors = await new Promise<unknown[]>((resolve) => {
        client.subscribe(
          { query: aliased, variables: { deviceId: ana.deviceId } },
          {
            next: (result) => {
              resolve([...(result.errors ?? [])]);
            },
            error: (error: unknown) => {
              resolve(Array.isArray(error) ? error : [error]);
            },
            complete: () => {
              resolve([]);
            },
          },
        );
      });
      expect(errors[0]).toMatchObject({ extensions: { code: 'QUERY_TOO_COMPLEX' } });
    } finally {
      await client.dispose();
    }
  });

  it('closes sockets that send headers or a body too slowly', async () => {
    const { port } = new URL(app.url);
    const slowHeaders = connect(Number(port), '127.0.0.1');
    slowHeaders.write('POST /graphql HTTP/1.1\r\nHost: x\r\n');
    const slowBody = connect(Number(port), '127.0.0.1');
    slowBody.write(
      'POST /graphql HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{',
    );
    const [headersClosed, bodyClosed] = await Promise.all([
      closedWithin(slowHeaders, 5_000),
      closedWithin(slowBody, 6_000),
    ]);
    slowHeaders.destroy();
    slowBody.destroy();
    expect(headersClosed, 'slow headers').toBe(true);
    expect(bodyClosed, 'slow body').toBe(true);
  });

  it('closes a graphql-ws connection_init without a valid token at once', async () => {
    expect(await wsClose(app.url, {})).toMatchObject({ code: 4401 });
    expect(await wsClose(app.url, { authorization: 'Bearer not-a-token' })).toMatchObject({
      code: 4403,
    });
  });

  it('bounds subscriptions per socket and per device', async () => {
    const ana = await ParleyDevice.create(app);
    const { subscriptionsPerSocket, subscriptionsPerDevice } = app.config.limits;
    const client = createClient({
      url: app.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${ana.token}` },
      retryAttempts: 0,
    });
    const outcomes: Promise<string>[] = [];
    for (let i = 0; i <= subscriptionsPerSocket; i++) {
      outcomes.push(
        new Promise((resolve) => {
          client.subscribe(
            { query: EVENTS_SUBSCRIPTION, variables: { deviceId: ana.deviceId } },
            {
              next: (result) => {
                const code = result.errors?.[0]?.extensions?.code;
                resolve(
                  result.errors === undefined ? 'live' : typeof code === 'string' ? code : 'error',
                );
              },
              error: (error: unknown) => {
                const [first] = Array.isArray(error) ? (error as unknown[]) : [error];
                resolve(
                  (first as { extensions?: { code?: string } } | undefined)?.extensions?.code ??
                    'error',
                );
              },
              complete: () => {
                resolve('complete');
              },
            },
          );
        }),
      );
    }
    const results = await Promise.all(outcomes);
    expect(results.filter((result) => result === 'live')).toHaveLength(subscriptionsPerSocket);
    expect(results).toContain('LIMIT_EXCEEDED');

    await client.dispose();

    // Per device, over as many sockets as it takes.
    const ben = await ParleyDevice.create(app);
    const subscriptions = [];
    for (let i = 0; i < subscriptionsPerDevice; i++) subscriptions.push(await ben.subscribe());
    const refused = await ben.subscribeAs(ben.deviceId);
    expect(refused[0]).toMatchObject({ extensions: { code: 'LIMIT_EXCEEDED' } });
    for (const subscription of subscriptions) await subscription.close();
  });

  it('closes a live socket when its token expires', async () => {
    const shortLived = await startTestApp({ tokenTtlSeconds: 2 });
    try {
      const cat = await ParleyDevice.create(shortLived);
      const closed = new Promise<number>((resolve) => {
        const client = createClient({
          url: shortLived.url.replace(/^http/, 'ws'),
          webSocketImpl: WebSocket,
          connectionParams: { authorization: `Bearer ${cat.token}` },
          retryAttempts: 0,
          on: {
            closed: (event) => {
              resolve((event as { code: number }).code);
            },
          },
        });
        client.subscribe(
          { query: EVENTS_SUBSCRIPTION, variables: { deviceId: cat.deviceId } },
          { next: () => undefined, error: () => undefined, complete: () => undefined },
        );
      });
      const { ms, value } = await timed(closed);
      expect(value).toBe(4401);
      expect(ms).toBeLessThan(4_000);
    } finally {
      await shortLived.close();
    }
  });
});

describeE2E('request errors outside resolvers', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  /** A raw POST to /graphql: the status and the parsed body. */
  async function post(
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<{
    status: number;
    body: { errors?: { message: string; extensions?: { code?: string } }[] };
  }> {
    const response = await fetch(app.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as never };
  }

  it('gives each a GraphQL error with a code a client can switch on', async () => {
    const ana = await signUpWithDevice(app);
    const auth = { authorization: `Bearer ${ana.token}` };
    const hashMismatch = await post(
      {
        query: '{ me { id } }',
        extensions: { persistedQuery: { version: 1, sha256Hash: 'a'.repeat(64) } },
      },
      auth,
    );
    expect(hashMismatch.body.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    const bigHeaders = await post({ query: '{ me { id } }' }, { 'x-padding': 'x'.repeat(20_000) });
    expect(bigHeaders.status).toBe(431);
    expect(bigHeaders.body.errors?.[0]?.extensions?.code).toBe('LIMIT_EXCEEDED');
    const overHttp = await post(
      { query: `subscription { events(deviceId: "${ana.deviceId}") { __typename } }` },
      auth,
    );
    expect(overHttp.body.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    expect(overHttp.status).toBe(400);
  });
});
