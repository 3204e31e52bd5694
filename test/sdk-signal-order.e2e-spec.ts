import { type CallSignal, type ParleyClient, tsMlsEngineFactory } from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, joined, sdkUser } from './support/sdk-clients.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

/**
 * A burst of call signals sent at once (ICE candidates as a page gathers them) reaches the other
 * members complete and in order. OpenMLS (core-crypto) decrypts an application message only a
 * little behind the newest generation it has seen, so signals that overtook each other on the
 * way to the server were lost there: the SDK posts a conversation's signals one after the other.
 * Against this in-process test server the posts of a burst kept their order even when they went
 * out at once (the client's saves, one at a time, release them in order, and nothing on the way
 * here overtakes): this checks the whole path, and conversation.spec.ts the order of the posts.
 */
const BURST = 12;
const ROUNDS = 5;

describeE2E('a burst of call signals from ts-mls to OpenMLS', () => {
  let app: TestApp;
  let ana: ParleyClient;
  let ben: ParleyClient;

  beforeAll(async () => {
    app = await startTestApp();
    ana = (await sdkUser(app, tsMlsEngineFactory)).client;
    ben = (await sdkUser(app, createOpenMlsEngineFactory())).client;
  });
  afterAll(async () => {
    await Promise.all([ana.close(), ben.close()]);
    await app.close();
  });

  it(`delivers ${ROUNDS} bursts of ${BURST} signals sent at once, in the order they were sent`, async () => {
    if (ben.userId === null || ben.deviceId === null) throw new Error('Ben is not set up');
    const conversation = await ana.createConversation([ben.userId]);
    const benConversation = await joined(ben, conversation.id);
    await eventually(async () => (await benConversation.members()).length === 2);
    const received: CallSignal[] = [];
    ben.calls.onSignal((signal) => received.push(signal));
    const call = await ana.calls.start(conversation.id, 'VIDEO');
    await ben.calls.join(call.id);

    // Several bursts: whether one overtakes the next on the way is a matter of timing.
    const to = ben.deviceId;
    const sent: string[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      const payloads = Array.from({ length: BURST }, (_, i) => `{"round":${round},"c":${i}}`);
      await Promise.all(
        payloads.map((payload) =>
          ana.calls.sendSignal(call.id, to, { kind: 'candidate', payload }),
        ),
      );
      sent.push(...payloads);
    }
    // Last, one sent on its own: once it is heard, every signal before it arrived or was lost.
    await ana.calls.sendSignal(call.id, to, { kind: 'offer', payload: 'last' });
    await eventually(() => received.some((signal) => signal.payload === 'last'));

    const heard = received.map((signal) => signal.payload);
    console.log(`signals sent ${sent.length + 1}, heard ${heard.length}`);
    expect(heard).toEqual([...sent, 'last']);
    await ana.calls.leave(call.id);
  });
});
