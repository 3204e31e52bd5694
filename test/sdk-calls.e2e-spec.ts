import {
  type CallEventInfo,
  type CallKeys,
  type CallSignal,
  type Conversation,
  crossEngineBaseKey,
  type FrameEncryptor,
  mlsKid,
  PREVIOUS_EPOCH_GRACE_MS,
  type ParleyClient,
  tsMlsEngineFactory,
} from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import { SFrameReceiver } from '@parley/sframe';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, joined, sdkUser } from './support/sdk-clients.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

/**
 * Calls in the SDK (issue 13, items 2, 4, 6) against the real server with real MLS on both
 * engines: Ana on ts-mls, Ben on OpenMLS (core-crypto), Cat on ts-mls joining and leaving. Both
 * engines derive the same SFrame keys from their MLS epochs, every epoch change rekeys, old keys
 * last PREVIOUS_EPOCH_GRACE_MS, a removed member decrypts nothing sent after its removal, the call
 * API goes round, and signals reach their addressee only.
 */
const EMPTY = new Uint8Array(0);
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const ms = (start: number) => `${(performance.now() - start).toFixed(1)} ms`;

describeE2E('calls in the SDK: ts-mls and OpenMLS in one call', () => {
  let app: TestApp;
  const clients: ParleyClient[] = [];
  const keys: CallKeys[] = [];
  let ana: ParleyClient;
  let ben: ParleyClient;
  let cat: ParleyClient;
  let anaConversation: Conversation;
  let benConversation: Conversation;
  let anaKeys: CallKeys;
  let benKeys: CallKeys;
  let anaStream: FrameEncryptor;
  let benStream: FrameEncryptor;

  beforeAll(async () => {
    app = await startTestApp();
    ana = (await sdkUser(app, tsMlsEngineFactory)).client;
    ben = (await sdkUser(app, createOpenMlsEngineFactory())).client;
    cat = (await sdkUser(app, tsMlsEngineFactory)).client;
    clients.push(ana, ben, cat);
    anaConversation = await ana.createConversation([userOf(ben)]);
    benConversation = await joined(ben, anaConversation.id);
    await eventually(async () => (await benConversation.members()).length === 2);
  });
  afterAll(async () => {
    for (const held of keys) held.close();
    await Promise.all(clients.map((client) => client.close()));
    await app.close();
  });

  function userOf(client: ParleyClient): string {
    if (client.userId === null) throw new Error('not signed in');
    return client.userId;
  }

  function deviceOf(client: ParleyClient): string {
    if (client.deviceId === null) throw new Error('no device');
    return client.deviceId;
  }

  async function keysOf(client: ParleyClient): Promise<CallKeys> {
    const opened = await client.calls.keys(anaConversation.id);
    keys.push(opened);
    return opened;
  }

  it('derives the same keys on both engines, and frames cross between them', async () => {
    let start = performance.now();
    anaKeys = await keysOf(ana);
    console.log(`call keys derived (ts-mls): ${ms(start)}`);
    start = performance.now();
    benKeys = await keysOf(ben);
    console.log(`call keys derived (OpenMLS): ${ms(start)}`);
    expect(benKeys.epoch).toBe(anaKeys.epoch);
    expect(benKeys.securityCode).toBe(anaKeys.securityCode);
    expect(anaKeys.securityCode).toMatch(/^\d{5}( \d{5}){4}$/);

    // The same exported secret, so the same base key, on both engines...
    const anaExport = await anaConversation.exportSecret('exporter', EMPTY, 32);
    const benExport = await benConversation.exportSecret('exporter', EMPTY, 32);
    expect(Buffer.from(benExport).equals(Buffer.from(anaExport))).toBe(true);
    // ...and the same member order, so each member's KID is the same seen from either side.
    const anaMembers = (await anaConversation.members()).map((member) => member.identity);
    const benMembers = (await benConversation.members()).map((member) => member.identity);
    expect(benMembers).toEqual(anaMembers);
    const kidOf = (client: ParleyClient) =>
      mlsKid(
        {
          context: 0n,
          senderIndex: anaMembers.indexOf(client.identity ?? ''),
          epoch: anaKeys.epoch,
        },
        anaMembers.length,
      );
    expect(anaKeys.kid).toBe(kidOf(ana));
    expect(benKeys.kid).toBe(kidOf(ben));

    anaStream = await anaKeys.createEncryptor();
    benStream = await benKeys.createEncryptor();
    const fromAna = await benKeys.decrypt(await anaStream.encrypt(bytes('video from ana')));
    expect(text(fromAna.plaintext)).toBe('video from ana');
    expect(fromAna.sender.deviceId).toBe(deviceOf(ana));
    const fromBen = await anaKeys.decrypt(await benStream.encrypt(bytes('audio from ben')));
    expect(text(fromBen.plaintext)).toBe('audio from ben');
    expect(fromBen.sender.deviceId).toBe(deviceOf(ben));

    // An independent receiver with the cross-engine base key reads Ben's frames too.
    const plain = new SFrameReceiver({ suite: 0x0004 });
    await plain.addKey(benStream.kid, await crossEngineBaseKey(anaExport));
    const frame = await benStream.encrypt(bytes('checked'));
    expect(text((await plain.decrypt(frame)).plaintext)).toBe('checked');
  });

  it('goes round the call API, with signals for their addressee only', async () => {
    // Cat joins the conversation first (an epoch change: new KIDs and security code), a third
    // member who must hear no signal for others.
    const before = { ana: anaStream.kid, ben: benStream.kid, code: anaKeys.securityCode };
    await anaConversation.addUsers([userOf(cat)]);
    await joined(cat, anaConversation.id);
    await eventually(() => benKeys.epoch === anaKeys.epoch && anaKeys.epoch === 2n);
    expect(anaStream.kid).not.toBe(before.ana);
    expect(benStream.kid).not.toBe(before.ben);
    expect(benKeys.securityCode).toBe(anaKeys.securityCode);
    expect(anaKeys.securityCode).not.toBe(before.code);
    const heard = new Map<ParleyClient, CallEventInfo[]>();
    const signals = new Map<ParleyClient, CallSignal[]>();
    for (const client of clients) {
      heard.set(client, []);
      signals.set(client, []);
      client.calls.onCall((event) => heard.get(client)?.push(event));
      client.calls.onSignal((signal) => signals.get(client)?.push(signal));
    }

    expect(await ana.calls.running(anaConversation.id)).toBeNull();
    expect(Array.isArray(await ana.calls.iceServers())).toBe(true);
    const call = await ana.calls.start(anaConversation.id, 'VIDEO');
    expect(ana.calls.activeCalls()).toEqual([call.id]);
    await eventually(() => (heard.get(ben) ?? []).some((event) => event.change === 'STARTED'));
    const started = heard.get(ben)?.find((event) => event.change === 'STARTED');
    expect(started?.call.id).toBe(call.id);
    expect(started?.deviceId).toBe(deviceOf(ana));
    // A second start is refused with the running call's id.
    await expect(ben.calls.start(anaConversation.id)).rejects.toMatchObject({
      code: 'CONFLICT',
      details: { reason: 'CALL_RUNNING', callId: call.id },
    });
    expect((await ben.calls.running(anaConversation.id))?.id).toBe(call.id);

    await ben.calls.join(call.id);
    expect(ben.calls.activeCalls()).toEqual([call.id]);
    await eventually(() => (heard.get(ana) ?? []).some((event) => event.change === 'JOINED'));

    await ana.calls.sendSignal(call.id, deviceOf(ben), { kind: 'offer', payload: 'v=0 offer' });
    await ben.calls.sendSignal(call.id, deviceOf(ana), { kind: 'answer', payload: 'v=0 answer' });
    await ana.calls.sendSignal(call.id, deviceOf(ben), { kind: 'candidate', payload: '{"c":1}' });
    await ben.calls.sendSignal(call.id, deviceOf(ana), { kind: 'candidate', payload: '{"c":2}' });
    // Last, one for Cat: once it arrives, Cat had decrypted (and ignored) the others before it.
    await ana.calls.sendSignal(call.id, deviceOf(cat), { kind: 'offer', payload: 'for cat' });
    await eventually(() => (signals.get(cat) ?? []).length === 1);
    await eventually(() => (signals.get(ben) ?? []).length === 2);
    await eventually(() => (signals.get(ana) ?? []).length === 2);
    expect(signals.get(cat)?.map((signal) => signal.payload)).toEqual(['for cat']);
    expect(signals.get(ben)?.map((signal) => [signal.kind, signal.payload])).toEqual([
      ['offer', 'v=0 offer'],
      ['candidate', '{"c":1}'],
    ]);
    expect(signals.get(ana)?.map((signal) => [signal.kind, signal.payload])).toEqual([
      ['answer', 'v=0 answer'],
      ['candidate', '{"c":2}'],
    ]);
    expect(signals.get(ben)?.[0]).toMatchObject({
      callId: call.id,
      conversationId: anaConversation.id,
      fromDeviceId: deviceOf(ana),
      fromUserId: userOf(ana),
    });

    await ben.calls.leave(call.id);
    expect(ben.calls.activeCalls()).toEqual([]);
    await eventually(() => (heard.get(ana) ?? []).some((event) => event.change === 'LEFT'));
    await ana.calls.leave(call.id);
    await eventually(() => (heard.get(ben) ?? []).some((event) => event.change === 'ENDED'));
    expect(ana.calls.activeCalls()).toEqual([]);
    expect(await ana.calls.running(anaConversation.id)).toBeNull();
    expect(heard.get(cat)?.map((event) => event.change)).toEqual([
      'STARTED',
      'JOINED',
      'LEFT',
      'LEFT',
      'ENDED',
    ]);
  });

  it('rekeys on every epoch change: new KIDs, old frames only within the window', async () => {
    const catConversation = await joined(cat, anaConversation.id);
    const catKeys = await keysOf(cat);
    expect(catKeys.securityCode).toBe(anaKeys.securityCode);
    expect(catKeys.securityCode).toBe(benKeys.securityCode);
    const codeBefore = anaKeys.securityCode;
    const kidBefore = anaStream.kid;
    const benKidBefore = benStream.kid;
    const inWindow = await anaStream.encrypt(bytes('sent before the rekey'));
    const afterWindow = await anaStream.encrypt(bytes('arrives too late'));
    const catFrame = await (await catKeys.createEncryptor()).encrypt(bytes('from cat'));
    expect((await benKeys.decrypt(catFrame)).sender.deviceId).toBe(deviceOf(cat));
    // What Cat knows of the last epoch it is in: a removed member that keeps it.
    const catExport = await catConversation.exportSecret('exporter', EMPTY, 32);

    // Ana (ts-mls, the admin) removes Cat; Ben (OpenMLS) hears the commit from the log.
    let accepted = 0;
    const unsubscribe = anaConversation.onEpochChange(() => {
      accepted ||= performance.now();
    });
    const ready = new Map<string, number>();
    anaKeys.onRekey(() => ready.set('ana', performance.now()));
    benKeys.onRekey(() => ready.set('ben', performance.now()));
    await anaConversation.removeUsers([userOf(cat)]);
    unsubscribe();
    await eventually(() => ready.size === 2);
    console.log(
      `rekey, commit accepted → new sender keys ready: committer (ts-mls) ` +
        `${((ready.get('ana') ?? 0) - accepted).toFixed(1)} ms, other member (OpenMLS) ` +
        `${((ready.get('ben') ?? 0) - accepted).toFixed(1)} ms`,
    );
    await eventually(() => catKeys.ended);

    expect(anaKeys.epoch).toBe(benKeys.epoch);
    expect(anaStream.kid).not.toBe(kidBefore);
    expect(benStream.kid).not.toBe(benKidBefore);
    expect(anaKeys.securityCode).toBe(benKeys.securityCode);
    expect(anaKeys.securityCode).not.toBe(codeBefore);

    const afterRekey = await anaStream.encrypt(bytes('after the rekey'));
    expect((await benKeys.decrypt(afterRekey)).epoch).toBe(benKeys.epoch);
    expect(text((await benKeys.decrypt(inWindow)).plaintext)).toBe('sent before the rekey');
    // Cat, removed: its keys are gone, and its last export does not make the new key.
    await expect(catKeys.decrypt(afterRekey)).rejects.toMatchObject({ code: 'UNKNOWN_KID' });
    const kept = new SFrameReceiver({ suite: 0x0004 });
    await kept.addKey(anaStream.kid, await crossEngineBaseKey(catExport));
    await expect(kept.decrypt(afterRekey)).rejects.toMatchObject({
      code: 'AUTHENTICATION_FAILED',
    });
    await sleep(PREVIOUS_EPOCH_GRACE_MS + 500);
    await expect(benKeys.decrypt(afterWindow)).rejects.toMatchObject({ code: 'UNKNOWN_KID' });
    expect(benKeys.heldEpochs()).toEqual([benKeys.epoch]);
    expect(anaKeys.heldEpochs()).toEqual([anaKeys.epoch]);
    // New frames still flow both ways.
    const reply = await anaKeys.decrypt(await benStream.encrypt(bytes('still here')));
    expect(text(reply.plaintext)).toBe('still here');
  });
});
