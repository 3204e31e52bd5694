import { type Conversation, MemoryStateStore, ParleyClient } from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import WebSocket from 'ws';
import { expect, it } from 'vitest';
import { eventually, sdkSuite } from './support/sdk-clients.js';
import { describeE2E } from './support/test-app.js';

/**
 * A client closed in the middle of its own commit request (issue 9's leftover). close() used to
 * abort the request with CLOSED, which is not resent: the server could store the commit while
 * the OpenMLS engine, told the send failed, discarded it — and once the log showed it, that
 * device could only rejoin (COMMIT_LOST). close() now lets a commit request on the wire get its
 * answer (5 s at most), and a client closed while a resend waits keeps no timer.
 */
const openMls = createOpenMlsEngineFactory();
const texts = (conversation: Conversation) => conversation.history().map((message) => message.text);

describeE2E('close() during an own commit request', () => {
  const { app, user, clients } = sdkSuite(openMls);
  const realFetch = globalThis.fetch;

  async function joined(client: ParleyClient, id: string): Promise<Conversation> {
    await eventually(() => client.conversations().some((conversation) => conversation.id === id));
    return client.conversation(id);
  }

  const isCommit = (init: RequestInit | undefined) =>
    typeof init?.body === 'string' && init.body.includes('submitCommitBundle');

  it('lets the commit request finish: the OpenMLS device keeps its commit after a restart', async () => {
    const store = new MemoryStateStore();
    const ana = await user(store);
    const ben = await user();
    const cy = await user();
    const group = await ana.client.createConversation([
      ben.client.userId ?? '',
      cy.client.userId ?? '',
    ]);
    const benView = await joined(ben.client, group.id);
    await joined(cy.client, group.id);

    // The server stores the commit; its answer is slow (1.5 s), and the client closes meanwhile.
    let answered: () => void = () => undefined;
    const commitSent = new Promise<void>((resolve) => {
      answered = resolve;
    });
    globalThis.fetch = async (input, init) => {
      const response = await realFetch(input, init);
      if (!isCommit(init)) return response;
      answered();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, 1500);
        init?.signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(init.signal?.reason instanceof Error ? init.signal.reason : new Error('aborted'));
        });
      });
      return response;
    };
    const removal = group.removeUsers([cy.client.userId ?? '']).catch((error: unknown) => error);
    try {
      await commitSent;
      const started = Date.now();
      await ana.client.close();
      expect(Date.now() - started).toBeLessThan(6000);
    } finally {
      globalThis.fetch = realFetch;
    }
    await removal;

    // Restarted from its saved state, the device goes on in the group: no COMMIT_LOST.
    const errors: unknown[] = [];
    const restarted = await ParleyClient.open({
      url: app().url,
      engine: openMls,
      store,
      webSocketImpl: WebSocket,
      onError: (error: unknown) => errors.push(error),
    });
    clients.push(restarted);
    await restarted.connect();
    const view = restarted.conversation(group.id);
    await eventually(async () => (await view.members()).length === 2, 30_000);
    await view.send('after the restart');
    await eventually(() => texts(benView).includes('after the restart'), 30_000);
    await benView.send('ben answers');
    await eventually(() => texts(view).includes('ben answers'), 30_000);
    expect(errors).toEqual([]);
  });

  it('a client closed while a commit resend waits ends within the bound and keeps no timer', async () => {
    const ana = await user();
    const ben = await user();
    const group = await ana.client.createConversation([ben.client.userId ?? '']);
    await joined(ben.client, group.id);

    // Every commit request fails without an answer: the SDK waits and resends.
    let failures = 0;
    globalThis.fetch = async (input, init) => {
      if (isCommit(init)) {
        failures += 1;
        throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED') });
      }
      return realFetch(input, init);
    };
    try {
      const settled = { now: false };
      const update = group.updateKeys().then(
        () => null,
        (error: unknown) => error,
      );
      void update.finally(() => {
        settled.now = true;
      });
      await eventually(() => failures >= 1);
      const started = Date.now();
      await ana.client.close();
      expect(Date.now() - started).toBeLessThan(6000);
      // Nothing of the commit is left waiting once close() returned: no resend timer.
      for (let tick = 0; tick < 5; tick++) await new Promise((resolve) => setImmediate(resolve));
      expect(settled.now).toBe(true);
      expect(await update).toMatchObject({
        code: expect.stringMatching(/^(CLOSED|NETWORK)$/) as unknown,
      });
      const after = failures;
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(failures, 'no resend after close()').toBe(after);
    } finally {
      globalThis.fetch = realFetch;
    }
  });
});
