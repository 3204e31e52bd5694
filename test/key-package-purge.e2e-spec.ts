import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetentionService } from '../apps/server/src/messages/retention.service.js';
import { b64, dataOf } from './support/graphql.js';
import { ParleyDevice } from './support/parley-client.js';
import {
  describeE2E,
  startTestApp,
  startTwoInstances,
  type TestApp,
  twoInstancesSkipReason,
} from './support/test-app.js';

interface KeyPackageRow {
  id: string;
  claimed: boolean;
  last_resort: boolean;
}

/** The key-package rows of a device, oldest first, as the database holds them. */
function rowsOf(app: TestApp, device: ParleyDevice): Promise<KeyPackageRow[]> {
  return app.app.get(DataSource).query(
    `SELECT "id", "claimed_at" IS NOT NULL AS "claimed", "last_resort" FROM "key_packages"
        WHERE "device_id" = $1 ORDER BY "id"`,
    [device.deviceId],
  );
}

/** Moves a device's claims `days` days into the past, as if that much time had gone by. */
async function ageClaims(app: TestApp, device: ParleyDevice, days: number): Promise<void> {
  await app.app.get(DataSource).query(
    `UPDATE "key_packages" SET "claimed_at" = "claimed_at" - make_interval(days => $2)
        WHERE "device_id" = $1 AND "claimed_at" IS NOT NULL`,
    [device.deviceId, days],
  );
}

async function uploadLastResort(device: ParleyDevice): Promise<void> {
  dataOf(
    await device.gql(
      `mutation ($deviceId: ID!, $lastResort: Bytes!) {
        uploadKeyPackages(input: { deviceId: $deviceId, keyPackages: [], lastResort: $lastResort }) { lastResort }
      }`,
      { lastResort: b64(await device.mls.lastResortKeyPackage()) },
    ),
  );
}

describeE2E('claimed key packages purge', () => {
  let app: TestApp;
  let retention: RetentionService;
  beforeAll(async () => {
    app = await startTestApp();
    retention = app.app.get(RetentionService);
  });
  afterAll(async () => {
    await app.close();
  });

  it('deletes a claimed key package when its device acknowledges the Welcome, and not before', async () => {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    await bob.uploadKeyPackages(2);
    await uploadLastResort(bob);
    const { conversationId, group } = await alice.createConversation();
    dataOf(
      await alice.submit(conversationId, await group.addMembers(await alice.claim([bob.userId]))),
    );
    group.confirmCommit();

    // The Welcome waits: the claimed row stays, a sweep within the retention keeps it too.
    expect(await retention.purgeClaimedKeyPackages()).toBe(0);
    expect(await rowsOf(app, bob)).toEqual([
      expect.objectContaining({ claimed: true, last_resort: false }),
      expect.objectContaining({ claimed: false, last_resort: false }),
      expect.objectContaining({ claimed: false, last_resort: true }),
    ]);

    const joined = await bob.joinFromWelcome();
    expect(joined.conversationId).toBe(conversationId);
    // Gone with the acknowledgement; the unclaimed and the last-resort key packages stay.
    expect(await rowsOf(app, bob)).toEqual([
      expect.objectContaining({ claimed: false, last_resort: false }),
      expect.objectContaining({ claimed: false, last_resort: true }),
    ]);
    await alice.say(group, conversationId, 'after the purge');
    const { texts } = await bob.catchUp(joined.group, conversationId, joined.commitSeq);
    expect(texts).toEqual(['after the purge']);
  });

  it('keeps a last-resort key package that was handed out and acknowledged', async () => {
    const alice = await ParleyDevice.create(app);
    const carol = await ParleyDevice.create(app);
    await uploadLastResort(carol);
    const { conversationId, group } = await alice.createConversation();
    dataOf(
      await alice.submit(conversationId, await group.addMembers(await alice.claim([carol.userId]))),
    );
    group.confirmCommit();
    await carol.joinFromWelcome();
    await ageClaims(app, carol, 400);
    await retention.purgeClaimedKeyPackages();
    expect(await rowsOf(app, carol)).toEqual([
      expect.objectContaining({ claimed: false, last_resort: true }),
    ]);
  });

  it('deletes key packages claimed longer ago than the retention, and the waiting Welcome still routes', async () => {
    const alice = await ParleyDevice.create(app);
    const dan = await ParleyDevice.create(app);
    const erin = await ParleyDevice.create(app);
    await dan.uploadKeyPackages(2);
    await uploadLastResort(dan);
    await erin.uploadKeyPackages(1);
    const { conversationId, group } = await alice.createConversation();
    dataOf(
      await alice.submit(conversationId, await group.addMembers(await alice.claim([dan.userId]))),
    );
    group.confirmCommit();
    // Erin's key package is claimed but not used yet: within the retention it stays usable.
    const erinKeyPackages = await alice.claim([erin.userId]);

    await ageClaims(app, dan, app.config.claimedKeyPackageRetentionDays + 1);
    await ageClaims(app, erin, app.config.claimedKeyPackageRetentionDays - 1);
    await ageClaims(app, alice, 1000); // nothing claimed: nothing moves
    expect(await retention.purgeClaimedKeyPackages()).toBe(1);
    expect(await rowsOf(app, dan)).toEqual([
      expect.objectContaining({ claimed: false, last_resort: false }),
      expect.objectContaining({ claimed: false, last_resort: true }),
    ]);
    expect(await rowsOf(app, erin)).toEqual([
      expect.objectContaining({ claimed: true, last_resort: false }),
    ]);

    // Dan's Welcome was routed by its own copy of the KeyPackageRef: it still reaches him.
    const joined = await dan.joinFromWelcome();
    expect(joined.conversationId).toBe(conversationId);
    dataOf(await alice.submit(conversationId, await group.addMembers(erinKeyPackages)));
    group.confirmCommit();
    await alice.say(group, conversationId, 'dan and erin');
    expect((await dan.catchUp(joined.group, conversationId, joined.commitSeq)).texts).toEqual([
      'dan and erin',
    ]);
    const erinJoined = await erin.joinFromWelcome();
    expect(
      (await erin.catchUp(erinJoined.group, conversationId, erinJoined.commitSeq)).texts,
    ).toEqual(['dan and erin']);
    expect(await rowsOf(app, erin)).toEqual([]);
  });

  it('keeps claimed key packages by age when the retention is 0', async () => {
    const keeping = await startTestApp({ claimedKeyPackageRetentionDays: 0 });
    try {
      const alice = await ParleyDevice.create(keeping);
      const bob = await ParleyDevice.create(keeping);
      await bob.uploadKeyPackages(1);
      await alice.claim([bob.userId]);
      await ageClaims(keeping, bob, 10_000);
      expect(await keeping.app.get(RetentionService).purgeClaimedKeyPackages()).toBe(0);
      expect(await rowsOf(keeping, bob)).toEqual([expect.objectContaining({ claimed: true })]);
    } finally {
      await keeping.close();
    }
  });
});

describe.skipIf(twoInstancesSkipReason !== undefined)(
  'claimed key packages purge on two instances',
  () => {
    let a: TestApp;
    let b: TestApp;
    beforeAll(async () => {
      [a, b] = await startTwoInstances();
    });
    afterAll(async () => {
      await Promise.all([a.close(), b.close()]);
    });

    it('deletes each old claimed row once, with sweeps running on both at the same time', async () => {
      const owner = await ParleyDevice.create(a);
      const claimer = await ParleyDevice.create(a);
      const dataSource = a.app.get(DataSource);
      // Rows straight into the table: the sweep reads only the claim columns, and real key
      // packages for thousands of rows would cost minutes of signing.
      const old = 3000;
      const insert = (count: number, claimed: string, lastResort = false) =>
        dataSource.query(
          `INSERT INTO "key_packages" ("device_id", "ref", "ciphersuite", "data", "not_before", "not_after",
                                       "last_resort", "claimed_at", "claimed_by_device_id")
           SELECT $1, decode(md5($2 || g::text), 'hex'), 1, '\\x00'::bytea, now(), now() + interval '1 day',
                  $4, ${claimed}, CASE WHEN ${claimed} IS NULL THEN NULL ELSE $5 END
             FROM generate_series(1, $3::int) g`,
          [owner.deviceId, randomBytes(8).toString('hex'), count, lastResort, claimer.deviceId],
        );
      await insert(old, `now() - interval '40 days'`);
      await insert(50, `now() - interval '1 day'`);
      await insert(50, 'NULL');
      await insert(1, 'NULL', true);

      const sweeps = [a, b, a, b].map((app) =>
        app.app.get(RetentionService).purgeClaimedKeyPackages(),
      );
      const deleted = await Promise.all(sweeps);
      expect(deleted.reduce((sum, n) => sum + n, 0)).toBe(old);
      const [left] = await dataSource.query<{ claimed: number; unclaimed: number; last: number }[]>(
        `SELECT count(*) FILTER (WHERE "claimed_at" IS NOT NULL)::int AS "claimed",
                count(*) FILTER (WHERE "claimed_at" IS NULL AND NOT "last_resort")::int AS "unclaimed",
                count(*) FILTER (WHERE "last_resort")::int AS "last"
           FROM "key_packages" WHERE "device_id" = $1`,
        [owner.deviceId],
      );
      expect(left).toEqual({ claimed: 50, unclaimed: 50, last: 1 });
    });
  },
);
