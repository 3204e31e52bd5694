import {
  type Conversation,
  type MlsEngineFactory,
  type ParleyClient,
  RemovedFromConversationError,
  tsMlsEngineFactory,
} from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, sdkDevice, sdkUser } from './support/sdk-clients.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

/**
 * Groups of ts-mls and OpenMLS devices, created by either engine, through a real server. Until
 * ts-mls key packages declared the x509 credential type besides basic, a group created by
 * OpenMLS (core-crypto requires both in its groups' required_capabilities) refused every ts-mls
 * device with "Credentials are not acceptable".
 */
const openMls = createOpenMlsEngineFactory();
const engines: [string, MlsEngineFactory, MlsEngineFactory][] = [
  ['ts-mls', tsMlsEngineFactory, openMls],
  ['OpenMLS', openMls, tsMlsEngineFactory],
];

const texts = (conversation: Conversation) => conversation.history().map((message) => message.text);

describeE2E.each(engines)('a mixed group created by %s', (_name, creatorEngine, otherEngine) => {
  let app: TestApp;
  const clients: ParleyClient[] = [];
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await app.close();
  });

  async function user(engine: MlsEngineFactory) {
    const made = await sdkUser(app, engine);
    clients.push(made.client);
    return made;
  }

  async function joined(client: ParleyClient, id: string): Promise<Conversation> {
    await eventually(() => client.conversations().some((conversation) => conversation.id === id));
    return client.conversation(id);
  }

  it('takes members of both engines, who talk, add, update and remove in both directions', async () => {
    // The creator and one of each engine at the start; the other engine's user has two devices.
    const ana = await user(creatorEngine);
    const ben = await user(otherEngine);
    const benPhone = await sdkDevice(app, otherEngine, ben.username);
    clients.push(benPhone);
    const cy = await user(creatorEngine);
    const dee = await user(otherEngine);
    const eve = await user(creatorEngine);
    const id = (made: { client: ParleyClient }) => made.client.userId ?? '';

    const group = await ana.client.createConversation([id(ben), id(cy)]);
    const benView = await joined(ben.client, group.id);
    const phoneView = await joined(benPhone, group.id);
    const cyView = await joined(cy.client, group.id);
    expect((await group.members()).length).toBe(4);

    // Messages both ways.
    await group.send('from the creator');
    await benView.send('from the other engine');
    await cyView.send('from the creator engine');
    const first = ['from the creator', 'from the other engine', 'from the creator engine'];
    for (const view of [group, benView, phoneView, cyView]) {
      await eventually(() => texts(view).length === first.length);
      expect(texts(view)).toEqual(first);
    }

    // A device of the other engine commits: its own key update (an UpdatePath in the creator's
    // group), then an add of one user of each engine.
    await benView.updateKeys();
    // Only admins add and remove other users: the creator makes Ben one.
    await group.setRole(id(ben), 'ADMIN');
    await benView.addUsers([id(dee), id(eve)]);
    const deeView = await joined(dee.client, group.id);
    const eveView = await joined(eve.client, group.id);
    await deeView.send('dee joined');
    await eveView.send('eve joined');
    const everyone = [group, benView, phoneView, cyView, deeView, eveView];
    for (const view of everyone) await eventually(() => texts(view).at(-1) === 'eve joined');
    expect((await group.members()).length).toBe(6);

    // A removal in each direction: the other engine removes a creator-engine user, and the
    // creator removes an other-engine user.
    await phoneView.removeUsers([id(cy)]);
    await expect(cyView.messages({ from: 'now' }).next()).rejects.toBeInstanceOf(
      RemovedFromConversationError,
    );
    await group.removeUsers([id(dee)]);
    await expect(deeView.messages({ from: 'now' }).next()).rejects.toBeInstanceOf(
      RemovedFromConversationError,
    );
    const remaining = [group, benView, phoneView, eveView];
    await eveView.send('after both removals');
    for (const view of remaining) {
      await eventually(() => texts(view).at(-1) === 'after both removals');
    }
    expect(texts(cyView)).not.toContain('after both removals');
    expect(texts(deeView)).not.toContain('after both removals');
    const members = (await group.members()).map((member) => member.userId).sort();
    expect(members).toEqual([id(ana), id(ben), id(ben), id(eve)].sort());

    // Every remaining device, of either engine, is at the same epoch with the same secrets.
    const secrets = await Promise.all(
      remaining.map(async (view) =>
        Buffer.from(await view.exportSecret('exporter', new Uint8Array(), 32)).toString('hex'),
      ),
    );
    expect(new Set(secrets).size).toBe(1);
  });
});
