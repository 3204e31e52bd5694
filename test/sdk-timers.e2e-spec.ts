import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Conversation,
  encodeEnvelope,
  type ExpiredMessages,
  FileStateStore,
  ForgedEntryError,
  keyFromBytes,
  type MlsEngineFactory,
  ParleyClient,
  type ReceivedMessage,
  type StateStore,
  type TimerChange,
  timerEnvelope,
  tsMlsEngineFactory,
} from '@parley/client';
import { toBase64 } from '@parley/protocol';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import { DataSource } from 'typeorm';
import WebSocket from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, joined } from './support/sdk-clients.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

/**
 * Disappearing messages through the SDK: a member sets the timer (a TIMER entry carrying a
 * `timer` envelope), every member's SDK removes each message from memory and from its sealed
 * state when its expiry comes and tells the app; a change applies from its seq on; a device
 * offline past the expiry never gets the message and learns the range is gone; forged timer
 * entries (edited by the server, relayed by another member's device, hidden in an ordinary
 * entry) are detected and change nothing. Real server, real MLS, both engines on both sides.
 */
const openMls = createOpenMlsEngineFactory();
const engines: [string, MlsEngineFactory, MlsEngineFactory][] = [
  ['ts-mls', tsMlsEngineFactory, openMls],
  ['OpenMLS', openMls, tsMlsEngineFactory],
];
const PASSWORD = 'correct horse battery';

describeE2E.each(engines)(
  'message timers in a group created by %s',
  (engineName, creator, other) => {
    let app: TestApp;
    let home: string;
    const clients: ParleyClient[] = [];

    beforeAll(async () => {
      app = await startTestApp();
      home = await mkdtemp(join(tmpdir(), 'parley-sdk-timers-'));
    });
    afterAll(async () => {
      await Promise.all(clients.map((client) => client.close()));
      await app.close();
      await rm(home, { recursive: true, force: true });
    });

    /** A client whose background errors and events the test records. */
    async function open(engine: MlsEngineFactory, store: StateStore) {
      const errors: unknown[] = [];
      const client = await ParleyClient.open({
        url: app.url,
        engine,
        store,
        webSocketImpl: WebSocket,
        keyPackageTarget: 5,
        onError: (error) => errors.push(error),
      });
      clients.push(client);
      const expired: (ExpiredMessages & { at: number })[] = [];
      const timers: TimerChange[] = [];
      client.onExpired((event) => expired.push({ ...event, at: Date.now() }));
      client.onTimerChanged((change) => timers.push(change));
      return { client, errors, expired, timers };
    }

    async function fileStore(name: string): Promise<FileStateStore> {
      return new FileStateStore(
        join(home, `${engineName}-${name}-${crypto.randomUUID()}.state`),
        await keyFromBytes(crypto.getRandomValues(new Uint8Array(32))),
      );
    }

    async function member(engine: MlsEngineFactory, name: string) {
      const store = await fileStore(name);
      const made = await open(engine, store);
      const username = `${name}_${engineName}_${Math.random().toString(36).slice(2, 8)}`.replace(
        /-/g,
        '',
      );
      await made.client.signUp(username, PASSWORD);
      await made.client.registerDevice('laptop');
      await made.client.connect();
      return { ...made, store, username };
    }

    async function tokenOf(username: string): Promise<string> {
      const response = await app.gql<{ signIn: { token: string } }>(
        'mutation ($input: CredentialsInput!) { signIn(input: $input) { token } }',
        { input: { username, password: PASSWORD } },
      );
      const token = response.data?.signIn.token;
      if (token === undefined) throw new Error(JSON.stringify(response.errors));
      return token;
    }

    const seqsOf = (events: ExpiredMessages[]) => events.flatMap((event) => event.seqs);
    const missedOf = (events: ExpiredMessages[]) => events.flatMap((event) => event.missed);
    const textIn = (view: Conversation, text: string) =>
      view.history().some((message) => message.text === text);

    it('removes messages from memory and sealed state 5 s after storage, and a change applies from its seq on', async () => {
      const ana = await member(creator, 'ana');
      const ben = await member(other, 'ben');
      const group = await ana.client.createConversation([ben.client.userId ?? '']);
      const benView = await joined(ben.client, group.id);
      expect(benView.messageTimerSeconds).toBe(0);

      // Refused before anything is encrypted or sent.
      for (const wrong of [1, 4, 86_401, -5, 2.5]) {
        await expect(group.setMessageTimer(wrong)).rejects.toMatchObject({ code: 'BAD_TIMER' });
      }

      const { seq: timerSeq } = await group.setMessageTimer(5);
      await eventually(() => ben.timers.some((change) => change.seq === timerSeq));
      expect(ben.timers.at(-1)).toMatchObject({
        seconds: 5,
        userId: ana.client.userId,
        deviceId: ana.client.deviceId,
        own: false,
      });
      expect(benView.messageTimerSeconds).toBe(5);
      expect(benView.messageTimerAuthenticated).toBe(true);
      expect(group.messageTimerSeconds).toBe(5);
      // In the timeline where it happened.
      expect(benView.history().find((message) => message.seq === timerSeq)).toMatchObject({
        type: 'timer',
        timerSeconds: 5,
        senderUserId: ana.client.userId,
      });

      const secret = `vanishing ${engineName} ${Math.random().toString(36).slice(2, 10)}`;
      const sent = await group.send(secret);
      await eventually(() => textIn(benView, secret));
      const received = benView.history().find((message) => message.seq === sent.seq);
      const mine = group.history().find((message) => message.seq === sent.seq);
      if (received?.expiresAt == null || mine?.expiresAt == null) throw new Error('no expiry');
      // Storage time + 5 s: the same instant on both devices (the server's createdAt).
      expect(received.expiresAt.getTime()).toBe(mine.expiresAt.getTime());

      await eventually(() => seqsOf(ben.expired).includes(sent.seq), 10_000);
      await eventually(() => seqsOf(ana.expired).includes(sent.seq), 10_000);
      const benAt = ben.expired.find((event) => event.seqs.includes(sent.seq))?.at ?? 0;
      const anaAt = ana.expired.find((event) => event.seqs.includes(sent.seq))?.at ?? 0;
      const due = received.expiresAt.getTime();
      console.log(
        `[${engineName}] client expiry lateness: receiver ${benAt - due} ms, sender ${anaAt - due} ms (5 s timer)`,
      );
      for (const at of [benAt, anaAt]) {
        expect(at - due).toBeGreaterThanOrEqual(0);
        expect(at - due).toBeLessThan(1_000);
      }
      expect(textIn(benView, secret)).toBe(false);
      expect(textIn(group, secret)).toBe(false);
      expect(benView.lastMessage?.text ?? null).not.toBe(secret);

      // Gone from the sealed state on disk too: a new client from the same file never sees it.
      const raw = new TextDecoder().decode((await ben.store.load()) ?? new Uint8Array());
      expect(raw).toContain(benView.id);
      expect(raw).not.toContain(secret);

      // A change mid-conversation: the message before it keeps 5 s, the one after gets 60 s.
      const before = await group.send(`before ${secret}`);
      const { seq: changeSeq } = await benView.setMessageTimer(60);
      const after = await group.send(`after ${secret}`);
      expect(before.seq).toBeLessThan(changeSeq);
      expect(changeSeq).toBeLessThan(after.seq);
      await eventually(() => benView.history().some((message) => message.seq === after.seq));
      // Expiry minus the sender's clock at sending: the timer plus the way to storage.
      const lifetime = (message: ReceivedMessage | undefined) =>
        message?.expiresAt == null ? null : message.expiresAt.getTime() - message.sentAt.getTime();
      const beforeLife = lifetime(benView.history().find((m) => m.seq === before.seq));
      const afterLife = lifetime(benView.history().find((m) => m.seq === after.seq));
      console.log(
        `[${engineName}] lifetimes around the change: before ${beforeLife} ms, after ${afterLife} ms`,
      );
      expect(beforeLife).toBeGreaterThanOrEqual(5_000);
      expect(beforeLife).toBeLessThan(6_500);
      expect(afterLife).toBeGreaterThanOrEqual(60_000);
      expect(afterLife).toBeLessThan(61_500);
      expect(ana.timers.at(-1)).toMatchObject({ seconds: 60, userId: ben.client.userId });
      await eventually(() => seqsOf(ana.expired).includes(before.seq), 10_000);
      await eventually(() => seqsOf(ben.expired).includes(before.seq), 10_000);
      expect(textIn(group, `after ${secret}`)).toBe(true);

      // Off: later messages never expire.
      await group.setMessageTimer(0);
      const kept = await group.send(`kept ${secret}`);
      await eventually(() => benView.history().some((message) => message.seq === kept.seq));
      expect(benView.history().find((m) => m.seq === kept.seq)?.expiresAt).toBeNull();
      expect(benView.messageTimerSeconds).toBe(0);
      expect(ana.errors).toEqual([]);
      expect(ben.errors).toEqual([]);

      // After a restart from that file: expired messages stay gone, the rest and the timer stay.
      await ben.client.close();
      const reloaded = await ParleyClient.open({ url: app.url, engine: other, store: ben.store });
      clients.push(reloaded);
      const restored = reloaded.conversation(group.id).history();
      expect(restored.some((message) => message.text === secret)).toBe(false);
      expect(restored.some((message) => message.seq === before.seq)).toBe(false);
      expect(restored.some((message) => message.seq === after.seq)).toBe(true);
      expect(reloaded.conversation(group.id).messageTimerSeconds).toBe(0);
    }, 90_000);

    it('a device offline past the expiry never gets the message and learns the range is gone', async () => {
      const ana = await member(creator, 'ana');
      const ben = await member(other, 'ben');
      const group = await ana.client.createConversation([ben.client.userId ?? '']);
      const benView = await joined(ben.client, group.id);
      await group.setMessageTimer(5);
      await eventually(() => benView.messageTimerSeconds === 5);
      const cursorBefore = benView.processedSeq;
      await ben.client.close();

      const secret = `while away ${engineName} ${Math.random().toString(36).slice(2, 10)}`;
      const sent = await group.send(secret);
      await new Promise((resolve) => setTimeout(resolve, 10_000));

      const again = await open(other, ben.store);
      await again.client.connect();
      const view = again.client.conversation(group.id);
      expect(view.processedSeq).toBeGreaterThanOrEqual(sent.seq);
      expect(view.processedSeq).toBeGreaterThan(cursorBefore);
      expect(view.history().some((message) => message.seq === sent.seq)).toBe(false);
      const missed = missedOf(again.expired);
      expect(missed.some((range) => range.fromSeq <= sent.seq && sent.seq <= range.toSeq)).toBe(
        true,
      );
      console.log(`[${engineName}] offline device told: missed ${JSON.stringify(missed)}`);
      // And the conversation goes on for it.
      const next = await group.send(`after ${secret}`);
      await eventually(() => view.history().some((message) => message.seq === next.seq));
      expect(again.errors).toEqual([]);
    }, 60_000);

    it('detects forged timer entries: a server-side edit, a relay by another member, a hidden change', async () => {
      const ana = await member(creator, 'ana');
      const ben = await member(other, 'ben');
      const group = await ana.client.createConversation([ben.client.userId ?? '']);
      const benView = await joined(ben.client, group.id);
      await group.setMessageTimer(30);
      await eventually(() => benView.messageTimerSeconds === 30);

      // (a) The server edits the value of a TIMER entry before ben (offline) reads it.
      await ben.client.close();
      const { seq: editedSeq } = await group.setMessageTimer(10);
      await app.app
        .get(DataSource)
        .query(
          `UPDATE log_entries SET timer_seconds = 3600 WHERE conversation_id = $1 AND seq = $2`,
          [group.id, editedSeq],
        );
      const benAgain = await open(other, ben.store);
      await benAgain.client.connect();
      const view = benAgain.client.conversation(group.id);
      await eventually(() => view.processedSeq >= editedSeq);
      const edited = benAgain.errors.filter((e) => e instanceof ForgedEntryError);
      expect(edited).toHaveLength(1);
      expect(edited[0]).toMatchObject({ seq: editedSeq, reason: 'VALUE_MISMATCH' });
      // The forged claim does not change the timer: the last genuine one (30) stands.
      expect(view.messageTimerSeconds).toBe(30);
      expect(benAgain.timers).toEqual([]);
      expect(view.history().some((message) => message.seq === editedSeq)).toBe(false);

      // (b) Ben's device relays bytes ana's device encrypted (a timer change that never reached
      // the log) through its own setMessageTimer: the credential names ana, the entry ben.
      const anaBytes = await group.encryptOutgoing(encodeEnvelope(timerEnvelope(3600)));
      const benToken = await tokenOf(ben.username);
      const relayed = await app.gql<{ setMessageTimer: { seq: number } }>(
        `mutation ($input: SetMessageTimerInput!) { setMessageTimer(input: $input) { seq } }`,
        {
          input: {
            conversationId: group.id,
            deviceId: benAgain.client.deviceId,
            seconds: 3600,
            message: toBase64(anaBytes),
          },
        },
        benToken,
      );
      const relayedSeq = relayed.data?.setMessageTimer.seq;
      if (relayedSeq === undefined) throw new Error(JSON.stringify(relayed.errors));
      for (const [who, errors, seen] of [
        ['ben', benAgain.errors, view],
        ['ana', ana.errors, group],
      ] as const) {
        await eventually(() => seen.processedSeq >= relayedSeq);
        const forged = errors.filter(
          (e): e is ForgedEntryError => e instanceof ForgedEntryError && e.seq === relayedSeq,
        );
        expect(forged, who).toHaveLength(1);
        expect(forged[0]?.reason).toBe('SENDER_MISMATCH');
        expect(forged[0]?.senderDeviceId).toBe(ana.client.deviceId);
        expect(forged[0]?.claimedDeviceId).toBe(benAgain.client.deviceId);
        expect(seen.messageTimerSeconds).not.toBe(3600);
      }
      // Relaying bytes already in the log stores nothing: the server answers with their entry.
      const logged = await app.gql<{
        messages: { entries: { seq: number; kind: string; message: string }[] };
      }>(
        `query ($d: ID!, $c: ID!) { messages(deviceId: $d, conversationId: $c, after: 0, first: 100) { entries { seq kind message } } }`,
        { d: benAgain.client.deviceId, c: group.id },
        benToken,
      );
      const genuine = logged.data?.messages.entries.find((entry) => entry.seq === editedSeq);
      if (genuine === undefined) throw new Error(JSON.stringify(logged.errors));
      const replay = await app.gql<{ setMessageTimer: { seq: number } }>(
        `mutation ($input: SetMessageTimerInput!) { setMessageTimer(input: $input) { seq } }`,
        {
          input: {
            conversationId: group.id,
            deviceId: benAgain.client.deviceId,
            seconds: 10,
            message: genuine.message,
          },
        },
        benToken,
      );
      expect(replay.data?.setMessageTimer.seq).toBe(editedSeq);

      // (c) Ana's device hides a timer change in an ordinary message: the server never learns it,
      // but members apply ana's authenticated change and report the hidden one.
      const hidden = await group.encryptOutgoing(encodeEnvelope(timerEnvelope(7)));
      const hiddenEntry = await app.gql<{ sendMessage: { seq: number } }>(
        `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { seq } }`,
        {
          input: {
            conversationId: group.id,
            deviceId: ana.client.deviceId,
            message: toBase64(hidden),
          },
        },
        await tokenOf(ana.username),
      );
      const hiddenSeq = hiddenEntry.data?.sendMessage.seq;
      if (hiddenSeq === undefined) throw new Error(JSON.stringify(hiddenEntry.errors));
      await eventually(() => view.processedSeq >= hiddenSeq);
      expect(
        benAgain.errors.some((e) => e instanceof ForgedEntryError && e.reason === 'HIDDEN_TIMER'),
      ).toBe(true);
      expect(view.messageTimerSeconds).toBe(7);
      expect(benAgain.timers.at(-1)).toMatchObject({ seq: hiddenSeq, seconds: 7 });
      console.log(
        `[${engineName}] forged entries detected: edit at ${editedSeq}, relay at ${relayedSeq}, hidden at ${hiddenSeq}`,
      );
    }, 60_000);
  },
);
