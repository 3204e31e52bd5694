import {
  ForbiddenError,
  MemoryStateStore,
  type MlsEngineFactory,
  ParleyClient,
  tsMlsEngineFactory,
} from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import WebSocket from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { dumpDatabase } from './support/database-dump.js';
import { eventually, joined, sdkDevice, sdkUser } from './support/sdk-clients.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

/**
 * Encrypted conversation metadata (name, description, avatar): an application message of
 * envelope type `metadata`, so only members read it. Set by a member of one engine, seen by the
 * others of both engines, and by a member added later (the adder sends it again right after its
 * Add commit); nowhere in the server's tables or log lines. Also the unread count, the last
 * message, and roles through the SDK.
 */
const openMls = createOpenMlsEngineFactory();
const engines: [string, MlsEngineFactory, MlsEngineFactory][] = [
  ['ts-mls', tsMlsEngineFactory, openMls],
  ['OpenMLS', openMls, tsMlsEngineFactory],
];

describeE2E.each(engines)(
  'metadata in a group created by %s',
  (engineName, creatorEngine, other) => {
    let app: TestApp;
    const clients: ParleyClient[] = [];
    const logLines: string[] = [];

    beforeAll(async () => {
      app = await startTestApp(
        {},
        {
          logStream: {
            write: (line: string) => {
              logLines.push(line);
            },
          },
        },
      );
    });
    afterAll(async () => {
      await Promise.all(clients.map((client) => client.close()));
      await app.close();
    });

    async function user(engine: MlsEngineFactory, store?: MemoryStateStore) {
      const made = await sdkUser(app, engine, store === undefined ? {} : { store });
      clients.push(made.client);
      return made;
    }

    it('is set by one member, seen by all, by a later member, and kept across a restart', async () => {
      const anaStore = new MemoryStateStore();
      const ana = await user(creatorEngine, anaStore);
      const ben = await user(other);
      const cy = await user(other);
      const id = (made: { client: ParleyClient }) => made.client.userId ?? '';
      const group = await ana.client.createConversation([id(ben)]);
      const benView = await joined(ben.client, group.id);
      // Nothing set yet: every field null, never undefined.
      expect(benView.metadata).toEqual({ name: null, description: null, avatar: null });
      expect(group.kind).toBe('GROUP');
      expect(group.peerUserId).toBeNull();
      expect(group.role).toBe('ADMIN');
      await eventually(() => benView.role === 'MEMBER' || benView.kind === 'GROUP');
      expect(benView.role).toBe('MEMBER');

      const heard: string[] = [];
      ben.client.onMetadata((conversation) => heard.push(conversation.metadata.name ?? '(none)'));
      const name = `Secret trip ${engineName} ${Math.random().toString(36).slice(2, 10)}`;
      const description = `Plans nobody else may read ${Math.random().toString(36).slice(2, 10)}`;
      const avatar = crypto.getRandomValues(new Uint8Array(600));
      await group.setMetadata({ name, description, avatar });
      await eventually(() => benView.metadata.name === name);
      expect(benView.metadata.description).toBe(description);
      expect(benView.metadata.avatar).toEqual(avatar);
      expect(heard).toContain(name);
      expect(group.metadata.name).toBe(name);
      // Metadata entries are not messages: neither in the history nor unread.
      expect(benView.history()).toEqual([]);
      expect(benView.unreadCount).toBe(0);

      // The newest by log order wins, whoever sets it; fields not given stay.
      const renamed = `${name} (renamed)`;
      await benView.setMetadata({ name: renamed });
      await eventually(() => group.metadata.name === renamed);
      expect(group.metadata.description).toBe(description);

      // A member added later learns the metadata in force (and never sees undefined).
      const seenByCy: unknown[] = [];
      cy.client.onJoined((conversation) => seenByCy.push(conversation.metadata.name));
      await group.addUsers([id(cy)]);
      const cyView = await joined(cy.client, group.id);
      expect(cyView.metadata.name === null || cyView.metadata.name === renamed).toBe(true);
      await eventually(() => cyView.metadata.name === renamed);
      expect(cyView.metadata.description).toBe(description);
      expect(cyView.metadata.avatar).toEqual(avatar);
      expect(seenByCy.every((seen) => seen === null || seen === renamed)).toBe(true);
      // The re-send for cy does not take the newer name back from those who knew it.
      const newest = `${name} (newest)`;
      await cyView.setMetadata({ name: newest });
      await eventually(() => benView.metadata.name === newest && group.metadata.name === newest);

      // A new device of ben joins by external commit: it cannot read the entries before it, and
      // one member that was in sends the metadata again.
      const benPhone = await sdkDevice(app, creatorEngine, ben.username);
      clients.push(benPhone);
      const phoneView = await joined(benPhone, group.id);
      expect(phoneView.metadata.name === null || phoneView.metadata.name === newest).toBe(true);
      await eventually(() => phoneView.metadata.name === newest, 30_000);
      expect(phoneView.metadata.avatar).toEqual(avatar);

      // Unread counts and the last message, kept with the state.
      await benView.send('one');
      await benView.send('two');
      await eventually(() => group.unreadCount === 2);
      expect(group.lastMessage?.text).toBe('two');
      expect(benView.unreadCount).toBe(0);
      await group.markRead();
      expect(group.unreadCount).toBe(0);
      await benView.send('three');
      await eventually(() => group.unreadCount === 1);

      // A restart from the sealed state keeps metadata, unread count and last message.
      await ana.client.close();
      const again = await ParleyClient.open({
        url: app.url,
        engine: creatorEngine,
        store: anaStore,
        webSocketImpl: WebSocket,
      });
      clients.push(again);
      const restored = again.conversation(group.id);
      expect(restored.metadata.name).toBe(newest);
      expect(restored.metadata.avatar).toEqual(avatar);
      expect(restored.unreadCount).toBe(1);
      expect(restored.lastMessage?.text).toBe('three');
      expect(restored.role).toBe('ADMIN');

      // Nowhere on the server: every table of the database, every log line.
      const dump = await dumpDatabase(app);
      expect(dump.tables).toBeGreaterThan(5);
      const haystacks = { tables: dump.text, logs: logLines.join('\n') };
      expect(logLines.length).toBeGreaterThan(10);
      for (const secret of [name, renamed, newest, description]) {
        const bytes = Buffer.from(secret, 'utf8');
        const needles = [
          secret,
          bytes.toString('base64'),
          bytes.toString('hex'),
          bytes.toString('latin1'),
        ];
        for (const [where, haystack] of Object.entries(haystacks)) {
          for (const needle of needles) {
            expect(haystack.includes(needle), `${where} hold ${needle}`).toBe(false);
          }
        }
      }
      const avatarHex = Buffer.from(avatar).toString('hex').slice(0, 64);
      expect(haystacks.tables.includes(avatarHex)).toBe(false);
      expect(haystacks.logs.includes(avatarHex)).toBe(false);
    });

    it('roles from the SDK: an admin sets them, a member cannot add users', async () => {
      const ana = await user(creatorEngine);
      const ben = await user(other);
      const cy = await user(creatorEngine);
      const dee = await user(other);
      const id = (made: { client: ParleyClient }) => made.client.userId ?? '';
      const group = await ana.client.createConversation([id(ben)]);
      const benView = await joined(ben.client, group.id);
      await eventually(() => benView.kind === 'GROUP');
      expect(benView.role).toBe('MEMBER');

      // A member's Add of another user is refused by the server, with the typed error.
      const refused = await benView.addUsers([id(cy)]).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(ForbiddenError);
      expect((refused as ForbiddenError).details.reason).toBe('ADMIN_REQUIRED');
      expect((await group.roster()).some((seat) => seat.userId === id(cy))).toBe(false);

      // A member cannot give roles either.
      const notAdmin = await benView.setRole(id(ben), 'ADMIN').catch((error: unknown) => error);
      expect(notAdmin).toBeInstanceOf(ForbiddenError);

      // The admin makes ben an admin: his role changes live, and now his Add goes through.
      await group.setRole(id(ben), 'ADMIN');
      await eventually(() => benView.role === 'ADMIN');
      const roster = await group.roster();
      expect(roster.find((seat) => seat.userId === id(ben))?.role).toBe('ADMIN');
      await benView.addUsers([id(dee)]);
      await joined(dee.client, group.id);
      expect((await group.roster()).find((seat) => seat.userId === id(dee))?.role).toBe('MEMBER');

      // Demoting oneself while another admin remains is fine; the last admin cannot step down.
      await group.setRole(id(ana), 'MEMBER');
      await eventually(() => group.role === 'MEMBER');
      const last = await benView.setRole(id(ben), 'MEMBER').catch((error: unknown) => error);
      expect(last).toMatchObject({ code: 'LAST_ADMIN' });
    });
  },
);
