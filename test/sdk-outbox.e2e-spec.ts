import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Conversation,
  FileStateStore,
  LimitExceededError,
  MemoryStateStore,
  type OutgoingMessage,
  ParleyClient,
  type StateStore,
  tsMlsEngineFactory,
} from '@parley/client';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';
import { OwnParley } from './support/own-parley.js';
import { eventually } from './support/sdk-clients.js';
import { e2eSkipReason, testDatabase } from './support/test-app.js';

/**
 * A TCP proxy in front of the server that can lose the answer to the next sendMessage (the
 * request reaches the server, the answer never reaches the client: a network drop mid-request)
 * or hold the next sendMessage until released. It records the message bytes of every
 * sendMessage that passes, so that a test sees what the client put on the wire.
 */
class FaultyProxy {
  /** base64 MLSMessage of every sendMessage request, in order. */
  readonly sent: string[] = [];
  private plan: 'pass' | 'lose-answer' | 'hold' = 'pass';
  private readonly held: (() => void)[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<FaultyProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = new FaultyProxy(server, (server.address() as { port: number }).port);
    server.on('connection', (client) => {
      proxy.pipe(client, targetPort);
    });
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/graphql`;
  }

  get heldCount(): number {
    return this.held.length;
  }

  loseNextAnswer(): void {
    this.plan = 'lose-answer';
  }

  holdNext(): void {
    this.plan = 'hold';
  }

  release(): void {
    for (const forward of this.held.splice(0)) forward();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private pipe(client: Socket, targetPort: number): void {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    this.sockets.add(client).add(upstream);
    let loseAnswer = false;
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    // With the server down the upstream fails at once; the client's request still gets read
    // (and recorded) before its connection is cut.
    const endSoon = () => setTimeout(end, 50);
    upstream.on('error', endSoon).on('close', endSoon);
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      if (text.includes('mutation SendMessage')) {
        this.sent.push(/"message":"([A-Za-z0-9+/=]+)"/.exec(text)?.[1] ?? '?');
        const plan = this.plan;
        this.plan = 'pass';
        if (plan === 'lose-answer') loseAnswer = true;
        if (plan === 'hold') {
          this.held.push(() => upstream.write(chunk));
          return;
        }
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      // The server answered (so it stored the message); the client never hears it.
      if (loseAnswer) end();
      else client.write(chunk);
    });
  }
}

/**
 * The durable outbox against a child server that is killed and restarted (PGlite in a
 * directory, or a fresh PostgreSQL database), with real ts-mls clients: messages typed while the
 * server is down are delivered after it is back, in order and once; a process that closed with
 * pending messages sends them after its next connect(); a retry puts the same bytes on the wire
 * (the server log holds the message once); the bytes are made again only when the server refused
 * their epoch; a refusal for good fails one message, not the ones after it.
 */
describe.skipIf(e2eSkipReason !== undefined)('SDK outbox', () => {
  let server: OwnParley;
  let home: string;
  const open: ParleyClient[] = [];
  const proxies: FaultyProxy[] = [];
  // Measured figures, printed at the end (README, The SDK).
  const figures: string[] = [];

  beforeAll(async () => {
    const buildFailure = inject('buildFailure');
    if (buildFailure !== null) throw new Error(buildFailure);
    home = await mkdtemp(join(tmpdir(), 'parley-sdk-outbox-'));
    server = await OwnParley.forSuite('sdk-outbox', home);
  }, 120_000);
  afterEach(async () => {
    await Promise.all(open.splice(0).map((client) => client.close()));
    await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
  });
  afterAll(async () => {
    console.info(`SDK outbox figures (${testDatabase}):\n  ${figures.join('\n  ')}`);
    await server.dispose();
    await rm(home, { recursive: true, force: true });
  });

  async function client(store: StateStore, url = server.url): Promise<ParleyClient> {
    const opened = await ParleyClient.open({
      url,
      engine: tsMlsEngineFactory,
      store,
      webSocketImpl: WebSocket,
      keyPackageTarget: 3,
      onError: (error: unknown) => {
        console.error('SDK background error:', error);
      },
    });
    open.push(opened);
    return opened;
  }

  let counter = 0;
  async function user(
    store: StateStore = new MemoryStateStore(),
    url = server.url,
  ): Promise<{ client: ParleyClient; store: StateStore; name: string }> {
    counter += 1;
    const name = `box${counter}_${Math.random().toString(36).slice(2, 7)}`;
    const created = await client(store, url);
    await created.signUp(name, 'correct horse battery');
    await created.registerDevice('laptop');
    await created.connect();
    return { client: created, store, name };
  }

  /** Ana (through `url`) and Ben in a new conversation; Ben's view of it. */
  async function pair(anaStore?: StateStore, url = server.url) {
    const ana = await user(anaStore, url);
    const ben = await user();
    const conversation = await ana.client.createConversation([ben.client.userId ?? '']);
    await eventually(() => ben.client.conversations().some((c) => c.id === conversation.id));
    return { ana, ben, conversation, benView: ben.client.conversation(conversation.id) };
  }

  const texts = (conversation: Conversation) =>
    conversation.history().map((message) => message.text);

  /** The conversation's log as the server holds it (read with a fresh token of the member). */
  async function serverLog(
    member: { client: ParleyClient; name: string },
    conversationId: string,
  ): Promise<{ seq: number; senderDeviceId: string; message: string }[]> {
    const signIn = await server.gql<{ signIn: { token: string } }>(
      'mutation ($input: CredentialsInput!) { signIn(input: $input) { token } }',
      { input: { username: member.name, password: 'correct horse battery' } },
    );
    const token = signIn.data?.signIn.token;
    const page = await server.gql<{
      messages: { entries: { seq: number; senderDeviceId: string; message: string }[] };
    }>(
      `query ($deviceId: ID!, $conversationId: ID!) {
        messages(deviceId: $deviceId, conversationId: $conversationId, after: 0, first: 100) {
          entries { seq senderDeviceId message }
        }
      }`,
      { deviceId: member.client.deviceId, conversationId },
      token,
    );
    return page.data?.messages.entries ?? [];
  }

  it('delivers messages typed while the server is down after it is back: in order, exactly once, pending then sent', async () => {
    const { ana, ben, conversation, benView } = await pair();
    const events: OutgoingMessage[] = [];
    ana.client.onOutbox((message) => events.push(message));
    await server.kill();
    const sends = ['down 1', 'down 2', 'down 3'].map((text) => conversation.send(text));
    try {
      await eventually(() => conversation.outbox().length === 3);
      expect(conversation.outbox().map((m) => [m.text, m.state])).toEqual([
        ['down 1', 'pending'],
        ['down 2', 'pending'],
        ['down 3', 'pending'],
      ]);
      // Some retries fail meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
    } finally {
      await server.start();
    }
    const healthy = Date.now();
    const results = await Promise.all(sends);
    figures.push(`3 messages typed during an outage sent ${Date.now() - healthy} ms after /health`);
    const seqs = results.map((result) => result.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    expect(new Set(seqs).size).toBe(3);
    expect(conversation.outbox()).toEqual([]);
    for (const { id, seq } of results) {
      expect(events.filter((e) => e.id === id).map((e) => [e.state, e.seq])).toEqual([
        ['pending', null],
        ['sent', seq],
      ]);
    }
    await eventually(() => texts(benView).includes('down 3'), 30_000);
    expect(texts(benView).filter((text) => text?.startsWith('down'))).toEqual([
      'down 1',
      'down 2',
      'down 3',
    ]);
    // Ana's own history shows each once too (the log's echo).
    await eventually(() => texts(conversation).includes('down 3'));
    expect(texts(conversation).filter((text) => text?.startsWith('down'))).toHaveLength(3);
    const log = await serverLog(ben, conversation.id);
    expect(log.filter((entry) => entry.senderDeviceId === ana.client.deviceId)).toHaveLength(3);
  }, 120_000);

  it('never sends a message discarded while it was pending', async () => {
    const proxy = await FaultyProxy.start(server.port);
    proxies.push(proxy);
    const { conversation, benView } = await pair(undefined, proxy.url);
    await server.kill();
    const dropped = conversation.send('changed my mind').catch((error: unknown) => error);
    const kept = conversation.send('this one goes');
    try {
      // Tried on the wire at least once: it now waits for its next try.
      await eventually(() => proxy.sent.length >= 1);
      const [first] = conversation.outbox();
      expect(first?.text).toBe('changed my mind');
      // Refused only in the instant it is on the wire.
      await eventually(async () => {
        try {
          await conversation.discard(first?.id ?? '');
          return true;
        } catch (error) {
          if ((error as { code?: string }).code === 'IN_FLIGHT') return false;
          throw error;
        }
      });
      expect(await dropped).toMatchObject({ code: 'DISCARDED' });
      expect(conversation.outbox().map((m) => m.text)).toEqual(['this one goes']);
    } finally {
      await server.start();
    }
    await kept;
    await eventually(() => texts(benView).includes('this one goes'), 30_000);
    expect(texts(benView)).not.toContain('changed my mind');
  }, 120_000);

  it('sends what a closed process left pending after the next connect(), with the same bytes', async () => {
    const proxy = await FaultyProxy.start(server.port);
    proxies.push(proxy);
    const path = join(home, `ana-${Date.now()}.state`);
    const secret = { passphrase: 'ana’s passphrase' };
    const { ana, ben, conversation, benView } = await pair(
      new FileStateStore(path, secret),
      proxy.url,
    );
    await server.kill();
    const sending = conversation.send('typed before quitting').catch((error: unknown) => error);
    try {
      // Encrypted, saved and tried at least once (the proxy saw the bytes, the server is down).
      await eventually(() => proxy.sent.length >= 1);
      await ana.client.close();
      expect(await sending).toMatchObject({ code: 'CLOSED' });
    } finally {
      await server.start();
    }

    // The next process: the message is still pending in the sealed state.
    const again = await client(new FileStateStore(path, secret), proxy.url);
    const view = again.conversation(conversation.id);
    expect(view.outbox().map((m) => [m.text, m.state])).toEqual([
      ['typed before quitting', 'pending'],
    ]);
    const events: OutgoingMessage[] = [];
    again.onOutbox((message) => events.push(message));
    const connecting = Date.now();
    await again.connect();
    await eventually(() => events.some((e) => e.state === 'sent'), 30_000);
    figures.push(
      `pending message of a closed process sent ${Date.now() - connecting} ms after connect()`,
    );
    expect(view.outbox()).toEqual([]);
    await eventually(() => texts(benView).includes('typed before quitting'), 30_000);
    expect(texts(benView).filter((text) => text === 'typed before quitting')).toHaveLength(1);
    // The new process knows the log's echo as its own (the engine state saved with the bytes).
    await eventually(() => texts(view).includes('typed before quitting'));
    expect(
      view
        .history()
        .filter((message) => message.text === 'typed before quitting')
        .map((message) => message.own),
    ).toEqual([true]);
    // Every attempt, before and after the restart, carried the same bytes; the log holds them once.
    expect(proxy.sent.length).toBeGreaterThanOrEqual(2);
    expect(new Set(proxy.sent).size).toBe(1);
    const log = await serverLog(ben, conversation.id);
    expect(log.filter((entry) => entry.message === proxy.sent[0])).toHaveLength(1);
  }, 120_000);

  it('retries a request whose answer was lost with the same bytes: the log holds the message once', async () => {
    const proxy = await FaultyProxy.start(server.port);
    proxies.push(proxy);
    const { ben, conversation, benView } = await pair(undefined, proxy.url);
    proxy.loseNextAnswer();
    const { seq } = await conversation.send('answer lost');
    expect(proxy.sent).toHaveLength(2);
    expect(proxy.sent[0]).toBe(proxy.sent[1]);
    const log = await serverLog(ben, conversation.id);
    const stored = log.filter((entry) => entry.message === proxy.sent[0]);
    expect(stored.map((entry) => entry.seq)).toEqual([seq]);
    await eventually(() => texts(benView).includes('answer lost'));
    expect(texts(benView).filter((text) => text === 'answer lost')).toHaveLength(1);
  }, 120_000);

  it('encrypts again only when the server refused the bytes because their epoch left the window', async () => {
    const proxy = await FaultyProxy.start(server.port);
    proxies.push(proxy);
    const { ben, conversation, benView } = await pair(undefined, proxy.url);
    proxy.holdNext();
    const sending = conversation.send('held back');
    await eventually(() => proxy.heldCount === 1);
    // Three epochs later (the server keeps messages of the newest 2 + the current one).
    for (let i = 0; i < 3; i++) await benView.updateKeys();
    proxy.release();
    const { seq } = await sending;
    expect(proxy.sent).toHaveLength(2);
    expect(proxy.sent[0]).not.toBe(proxy.sent[1]);
    const log = await serverLog(ben, conversation.id);
    expect(log.filter((entry) => entry.message === proxy.sent[0])).toEqual([]);
    expect(log.filter((entry) => entry.message === proxy.sent[1]).map((e) => e.seq)).toEqual([seq]);
    await eventually(() => texts(benView).includes('held back'));
    expect(texts(benView).filter((text) => text === 'held back')).toHaveLength(1);
  }, 120_000);

  it('fails a message the server refuses for good, goes on with the next, and lets it be retried or discarded', async () => {
    const { ana, conversation, benView } = await pair();
    const events: OutgoingMessage[] = [];
    ana.client.onOutbox((message) => events.push(message));
    // Over the server's 256 KiB message limit.
    const tooLarge = conversation.send('x'.repeat(300 * 1024)).catch((error: unknown) => error);
    const next = conversation.send('after the large one');
    expect(await tooLarge).toBeInstanceOf(LimitExceededError);
    await next;
    await eventually(() => texts(benView).includes('after the large one'));
    const [failed] = conversation.outbox();
    expect(failed?.state).toBe('failed');
    expect(failed?.error?.code).toBe('LIMIT_EXCEEDED');
    expect(events.filter((e) => e.id === failed?.id).map((e) => e.state)).toEqual([
      'pending',
      'failed',
    ]);
    // Retried: refused again; discarded: gone.
    await expect(conversation.retry(failed?.id ?? '')).rejects.toBeInstanceOf(LimitExceededError);
    await conversation.discard(failed?.id ?? '');
    expect(conversation.outbox()).toEqual([]);
  }, 120_000);
});
