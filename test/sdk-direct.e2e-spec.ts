import {
  BadInputError,
  type Conversation,
  ForbiddenError,
  type MlsEngineFactory,
  type ParleyClient,
  tsMlsEngineFactory,
} from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, sdkDevice, sdkUser } from './support/sdk-clients.js';
import {
  describeE2E,
  startTestApp,
  startTwoInstances,
  type TestApp,
  twoInstancesSkipReason,
} from './support/test-app.js';

/**
 * Direct conversations through the SDK: startDirectConversation returns the DM this device is
 * in, or creates it; when both users start it at the same moment (on one instance or on two),
 * the database lets one creation through and the other user's SDK joins that conversation —
 * exactly one DM per pair each round, every device of both users in it, messages both ways.
 */
const openMls = createOpenMlsEngineFactory();
const ROUNDS = Number(process.env.PARLEY_DM_ROUNDS ?? 20);
const texts = (conversation: Conversation) => conversation.history().map((message) => message.text);

/** One round: ana (two devices) and ben start their DM at the same moment. */
async function raceRound(
  round: number,
  [first, second]: [TestApp, TestApp],
  clients: ParleyClient[],
): Promise<string> {
  // Engines alternate, so that either one wins the race and either one joins.
  const [anaEngine, benEngine]: [MlsEngineFactory, MlsEngineFactory] =
    round % 2 === 0 ? [tsMlsEngineFactory, openMls] : [openMls, tsMlsEngineFactory];
  const ana = await sdkUser(first, anaEngine);
  const ben = await sdkUser(second, benEngine);
  const anaPhone = await sdkDevice(second, benEngine, ana.username);
  clients.push(ana.client, ben.client, anaPhone);
  const anaId = ana.client.userId ?? '';
  const benId = ben.client.userId ?? '';

  const [anaDm, benDm] = await Promise.all([
    ana.client.startDirectConversation(benId),
    ben.client.startDirectConversation(anaId),
  ]);
  expect(benDm.id, `round ${round}: one conversation`).toBe(anaDm.id);
  for (const dm of [anaDm, benDm]) expect(dm.kind).toBe('DIRECT');
  expect(anaDm.peerUserId).toBe(benId);
  expect(benDm.peerUserId).toBe(anaId);

  // Every device of both users in it, and nobody else.
  await eventually(() => anaPhone.conversations().some((c) => c.id === anaDm.id), 30_000);
  const phoneDm = anaPhone.conversation(anaDm.id);
  const devices = [ana.client.deviceId, anaPhone.deviceId, ben.client.deviceId].sort();
  await eventually(async () => {
    const members = (await benDm.members()).map((member) => member.deviceId).sort();
    return JSON.stringify(members) === JSON.stringify(devices);
  }, 30_000);

  // Messages both ways (and to ana's other device).
  await anaDm.send(`ana ${round}`);
  await benDm.send(`ben ${round}`);
  await eventually(
    () =>
      texts(benDm).includes(`ana ${round}`) &&
      texts(anaDm).includes(`ben ${round}`) &&
      texts(phoneDm).includes(`ana ${round}`) &&
      texts(phoneDm).includes(`ben ${round}`),
    30_000,
  );
  // Started again, the DM is the same one.
  expect((await ben.client.startDirectConversation(anaId)).id).toBe(anaDm.id);
  for (const client of [ana.client, ben.client, anaPhone]) {
    expect(client.conversations().filter((c) => c.kind === 'DIRECT')).toHaveLength(1);
  }
  await Promise.all([ana.client.close(), ben.client.close(), anaPhone.close()]);
  return anaDm.id;
}

async function directCount(app: TestApp): Promise<number> {
  const [row] = await app.app
    .get(DataSource)
    .query<{ count: string }[]>(
      `SELECT count(*) AS "count" FROM conversations WHERE kind = 'DIRECT'`,
    );
  return Number(row?.count);
}

describeE2E('direct conversations through the SDK', () => {
  let app: TestApp;
  const clients: ParleyClient[] = [];
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await app.close();
  });

  it(`two users starting their DM at the same moment get one conversation (${ROUNDS} rounds)`, async () => {
    const started = Date.now();
    const ids = new Set<string>();
    for (let round = 0; round < ROUNDS; round++)
      ids.add(await raceRound(round, [app, app], clients));
    expect(ids.size).toBe(ROUNDS);
    expect(await directCount(app)).toBe(ROUNDS);
    console.log(
      `DM race, one instance: ${ROUNDS} rounds in ${Date.now() - started} ms, one DM each`,
    );
  });

  it('refuses a DM with oneself and a third user in a DM, with typed errors', async () => {
    const ana = await sdkUser(app, tsMlsEngineFactory);
    const ben = await sdkUser(app, openMls);
    const cy = await sdkUser(app, tsMlsEngineFactory);
    clients.push(ana.client, ben.client, cy.client);
    const self = await ana.client
      .startDirectConversation(ana.client.userId ?? '')
      .catch((error: unknown) => error);
    expect(self).toBeInstanceOf(BadInputError);
    const dm = await ana.client.startDirectConversation(ben.client.userId ?? '');
    expect(dm.role).toBe('ADMIN');
    const third = await dm.addUsers([cy.client.userId ?? '']).catch((error: unknown) => error);
    expect(third).toBeInstanceOf(ForbiddenError);
    expect((third as ForbiddenError).details.reason).toBe('DIRECT_CONVERSATION');
    const roster = await dm.roster();
    expect(new Set(roster.map((seat) => seat.userId))).toEqual(
      new Set([ana.client.userId, ben.client.userId]),
    );
    // Still working after the refusal.
    await eventually(() => ben.client.conversations().some((c) => c.id === dm.id));
    await dm.send('still here');
    await eventually(() => texts(ben.client.conversation(dm.id)).includes('still here'));
  });
});

if (twoInstancesSkipReason !== undefined)
  console.warn(`DM race on two instances skipped: ${twoInstancesSkipReason}`);

describe.skipIf(twoInstancesSkipReason !== undefined)('direct conversations, two instances', () => {
  let apps: [TestApp, TestApp];
  const clients: ParleyClient[] = [];
  beforeAll(async () => {
    apps = await startTwoInstances();
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await Promise.all(apps.map((app) => app.close()));
  });

  it(`two users on two instances starting their DM at the same moment get one (${ROUNDS} rounds)`, async () => {
    const started = Date.now();
    const ids = new Set<string>();
    for (let round = 0; round < ROUNDS; round++) ids.add(await raceRound(round, apps, clients));
    expect(ids.size).toBe(ROUNDS);
    expect(await directCount(apps[0])).toBe(ROUNDS);
    console.log(
      `DM race, two instances: ${ROUNDS} rounds in ${Date.now() - started} ms, one DM each`,
    );
  });
});
