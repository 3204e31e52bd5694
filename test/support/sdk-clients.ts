import {
  type Conversation,
  type MlsEngineFactory,
  ParleyClient,
  type StateStore,
} from '@parley/client';
import { afterAll, beforeAll } from 'vitest';
import WebSocket from 'ws';
import { startTestApp, type TestApp } from './test-app.js';

let counter = 0;

/** A signed-up user's first device as an SDK client, connected and live. */
export async function sdkUser(
  app: TestApp,
  engine: MlsEngineFactory,
  options: { store?: StateStore; name?: string } = {},
): Promise<{ client: ParleyClient; username: string }> {
  counter += 1;
  const username = options.name ?? `sdk${counter}_${Math.random().toString(36).slice(2, 8)}`;
  const client = await sdkClient(app, engine, options.store);
  await client.signUp(username, 'correct horse battery');
  await client.registerDevice('laptop');
  await client.connect();
  return { client, username };
}

/**
 * The hooks of a suite of SDK users on one test app: the app starts before the suite and closes
 * after it, with every client in `clients` (those `user()` made among them); `globalThis.fetch` is
 * given back, should a test that wraps it fail before restoring it.
 */
export function sdkSuite(engine: MlsEngineFactory): {
  app: () => TestApp;
  user: (store?: StateStore) => Promise<{ client: ParleyClient; username: string }>;
  /** Clients closed after the suite; add any made otherwise. */
  clients: ParleyClient[];
} {
  let started: TestApp | undefined;
  const clients: ParleyClient[] = [];
  const realFetch = globalThis.fetch;
  beforeAll(async () => {
    started = await startTestApp();
  });
  afterAll(async () => {
    globalThis.fetch = realFetch;
    await Promise.all(clients.map((client) => client.close()));
    await started?.close();
  });
  const app = (): TestApp => {
    if (started === undefined) throw new Error('The suite’s app has not started');
    return started;
  };
  return {
    app,
    clients,
    user: async (store) => {
      const made = await sdkUser(app(), engine, store === undefined ? {} : { store });
      clients.push(made.client);
      return made;
    },
  };
}

/** Another device of an existing user (signed in with its password), connected and live. */
export async function sdkDevice(
  app: TestApp,
  engine: MlsEngineFactory,
  username: string,
  store?: StateStore,
): Promise<ParleyClient> {
  const client = await sdkClient(app, engine, store);
  await client.signIn(username, 'correct horse battery');
  await client.registerDevice('phone');
  await client.connect();
  return client;
}

/** An SDK client of the test server (not signed in, unless its store says so). */
export function sdkClient(
  app: TestApp,
  engine: MlsEngineFactory,
  store?: StateStore,
): Promise<ParleyClient> {
  return ParleyClient.open({
    url: app.url,
    engine,
    webSocketImpl: WebSocket,
    keyPackageTarget: 5,
    onError: (error: unknown) => {
      // Background failures (live events, reconnects) would otherwise go unseen in a test.
      console.error('SDK background error:', error);
    },
    ...(store === undefined ? {} : { store }),
  });
}

/** The client's view of a conversation once it has joined it (by Welcome or external commit). */
export async function joined(client: ParleyClient, id: string): Promise<Conversation> {
  await eventually(() => client.conversations().some((conversation) => conversation.id === id));
  return client.conversation(id);
}

/** Waits until `check` holds, polling; fails after `ms`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 15_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
