import {
  type Conversation,
  type MlsEngineFactory,
  ParleyClient,
  type StateStore,
} from '@parley/client';
import WebSocket from 'ws';
import type { TestApp } from './test-app.js';

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
