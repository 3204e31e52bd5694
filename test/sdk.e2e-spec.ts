import {
  type Conversation,
  LeftConversationError,
  MemoryStateStore,
  type MlsEngineFactory,
  type ParleyClient,
  RemovedFromConversationError,
  tsMlsEngineFactory,
} from '@parley/client';
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, sdkClient, sdkDevice, sdkUser } from './support/sdk-clients.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

const engines: [string, MlsEngineFactory][] = [
  ['ts-mls', tsMlsEngineFactory],
  ['openmls', createOpenMlsEngineFactory()],
];

/** Texts of a conversation's history, in order. */
const texts = (conversation: Conversation) => conversation.history().map((message) => message.text);

describeE2E.each(engines)('SDK with the %s engine', (_name, engine) => {
  let app: TestApp;
  const clients: ParleyClient[] = [];
  // Every WebSocket the server accepts, so that a test can cut them like a network failure.
  const sockets: Duplex[] = [];
  beforeAll(async () => {
    app = await startTestApp();
    const server: Server = app.app.getHttpServer();
    server.on('upgrade', (_request: unknown, socket: Duplex) => {
      sockets.push(socket);
    });
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await app.close();
  });

  type User = Awaited<ReturnType<typeof sdkUser>>;

  async function user(store?: MemoryStateStore): Promise<User> {
    const made = await sdkUser(app, engine, store === undefined ? {} : { store });
    clients.push(made.client);
    return made;
  }

  /** The conversation with this id on the client, once it has joined. */
  async function joined(client: ParleyClient, id: string): Promise<Conversation> {
    await eventually(() => client.conversations().some((conversation) => conversation.id === id));
    return client.conversation(id);
  }

  it('runs a group of five users on seven devices: order, removal, a commit race, restart and reconnect', async () => {
    const users = await Promise.all(Array.from({ length: 5 }, () => user()));
    const [alice, bob, carol, dave, erin] = users as [User, User, User, User, User];
    const bobPhoneStore = new MemoryStateStore();
    const bobPhone = await sdkDevice(app, engine, bob.username, bobPhoneStore);
    const carolPhone = await sdkDevice(app, engine, carol.username);
    clients.push(bobPhone, carolPhone);

    const ids = users.map((member) => member.client.userId ?? '');
    const group = await alice.client.createConversation(ids.slice(1));
    const devices = [
      alice.client,
      bob.client,
      bobPhone,
      carol.client,
      carolPhone,
      dave.client,
      erin.client,
    ];
    const views = await Promise.all(devices.map((device) => joined(device, group.id)));
    expect((await group.members()).length).toBe(7);

    // Everyone speaks once; every device sees the same messages in the same order.
    for (const [i, view] of views.entries()) await view.send(`message ${i}`);
    const expected = views.map((_, i) => `message ${i}`);
    for (const view of views) await eventually(() => texts(view).length === expected.length);
    const orders = views.map((view) => texts(view).join('|'));
    expect(new Set(orders).size).toBe(1);
    expect([...texts(group)].sort()).toEqual([...expected].sort());

    // Two members commit at once: one wins, the other gets STALE_EPOCH and recovers on its own.
    await Promise.all([views[1]?.updateKeys(), views[5]?.updateKeys()]);
    await views[6]?.send('after the race');
    for (const view of views) await eventually(() => texts(view).at(-1) === 'after the race');

    // Bob's phone restarts from its saved state mid-conversation and continues.
    await bobPhone.close();
    await alice.client.conversation(group.id).send('while the phone was off');
    const restarted = await sdkClient(app, engine, bobPhoneStore);
    clients.push(restarted);
    await restarted.connect();
    const phoneView = restarted.conversation(group.id);
    // What the phone decrypted before the restart is still there (MLS cannot decrypt it again).
    expect(texts(phoneView).slice(0, expected.length)).toEqual(
      texts(views[2] as Conversation).slice(0, expected.length),
    );
    await eventually(() => texts(phoneView).at(-1) === 'while the phone was off');
    await phoneView.send('phone is back');
    await eventually(() => texts(group).at(-1) === 'phone is back');

    // Carol is removed with both her devices; they stop, the others go on.
    const carolViews = [views[3], views[4]] as [Conversation, Conversation];
    await group.removeUsers([carol.client.userId ?? '']);
    for (const view of carolViews) {
      // The iterator yields nothing new and ends with the removal.
      await expect(view.messages({ from: 'now' }).next()).rejects.toBeInstanceOf(
        RemovedFromConversationError,
      );
    }
    expect((await group.members()).map((member) => member.userId)).not.toContain(
      carol.client.userId,
    );
    await views[5]?.send('without carol');
    await eventually(() => texts(group).at(-1) === 'without carol');
    expect(texts(carolViews[0])).not.toContain('without carol');
  });

  it('lets a member leave; the others remove it on their own and go on', async () => {
    const ana = await user();
    const ben = await user();
    const cy = await user();
    const group = await ana.client.createConversation([
      ben.client.userId ?? '',
      cy.client.userId ?? '',
    ]);
    const benView = await joined(ben.client, group.id);
    const cyView = await joined(cy.client, group.id);
    await cyView.leave();
    // A left conversation stays listed, with its status and history, until forgotten.
    expect(cyView.status).toBe('left');
    await expect(cyView.send('after leaving')).rejects.toBeInstanceOf(LeftConversationError);
    await cy.client.forget(group.id);
    expect(cy.client.conversations().map((conversation) => conversation.id)).not.toContain(
      group.id,
    );
    await eventually(async () =>
      (await group.members()).every((member) => member.userId !== cy.client.userId),
    );
    await group.send('cy left');
    await eventually(() => texts(benView).at(-1) === 'cy left');
  });

  it('loses nothing when the live socket drops', async () => {
    const alice = await user();
    const bob = await user();
    const conversation = await alice.client.createConversation([bob.client.userId ?? '']);
    const bobView = await joined(bob.client, conversation.id);
    await conversation.send('before');
    await eventually(() => texts(bobView).includes('before'));
    // Kill Bob's socket from the server side: every WebSocket of the app is terminated.
    const sockets = (app.app.getHttpServer() as { listeners(event: string): unknown[] }).listeners(
      'upgrade',
    );
    expect(sockets.length).toBeGreaterThan(0);
    await (bob.client as unknown as { transport: { close(): Promise<void> } }).transport.close();
    for (const text of ['during 1', 'during 2']) await conversation.send(text);
    await eventually(() => texts(bobView).includes('during 2'));
    expect(texts(bobView)).toEqual(['before', 'during 1', 'during 2']);
  });
});

describeE2E('SDK with OpenMLS and ts-mls devices in one group', () => {
  let app: TestApp;
  const clients: ParleyClient[] = [];
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await app.close();
  });

  it('exchanges messages and commits (adds, removes, updates) in both directions', async () => {
    const openmls = createOpenMlsEngineFactory();
    const ben = await sdkUser(app, tsMlsEngineFactory); // ts-mls creates the group
    const ana = await sdkUser(app, openmls);
    const cy = await sdkUser(app, openmls);
    const dee = await sdkUser(app, tsMlsEngineFactory);
    const anaPhone = await sdkDevice(app, openmls, ana.username);
    clients.push(ana.client, ben.client, cy.client, dee.client, anaPhone);
    const group = await ben.client.createConversation([ana.client.userId ?? '']);
    const viewOf = async (client: ParleyClient) => {
      await eventually(() => client.conversations().length === 1);
      return client.conversation(group.id);
    };
    const anaView = await viewOf(ana.client);
    // Only admins add and remove other users: the creator (ts-mls) makes Ana (OpenMLS) one.
    await group.setRole(ana.client.userId ?? '', 'ADMIN');
    // OpenMLS adds OpenMLS and ts-mls users; ts-mls and OpenMLS both update; ts-mls removes.
    await anaView.addUsers([cy.client.userId ?? '', dee.client.userId ?? '']);
    const cyView = await viewOf(cy.client);
    const deeView = await viewOf(dee.client);
    const phoneView = await viewOf(anaPhone);
    await anaView.updateKeys();
    await group.updateKeys();
    const views = [group, anaView, cyView, deeView, phoneView];
    for (const [i, view] of views.entries()) await view.send(`from ${i}`);
    for (const view of views) await eventually(() => texts(view).length === views.length);
    expect(new Set(views.map((view) => texts(view).join('|'))).size).toBe(1);
    await group.removeUsers([cy.client.userId ?? '']);
    await anaView.send('cy is gone');
    for (const view of [group, deeView, phoneView]) {
      await eventually(() => texts(view).at(-1) === 'cy is gone');
    }
    await phoneView.removeUsers([dee.client.userId ?? '']);
    await group.send('dee is gone too');
    await eventually(() => texts(anaView).at(-1) === 'dee is gone too');
    const secrets = await Promise.all(
      [group, anaView, phoneView].map(async (view) =>
        Buffer.from(await view.exportSecret('exporter', new Uint8Array(), 32)).toString('hex'),
      ),
    );
    expect(new Set(secrets).size).toBe(1);
  });
});
