import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { toHex } from '@parley/protocol';
import { MlsMember, tamperSignature } from '@parley/mls-member';
import {
  b64,
  dataOf,
  errorCodeOf,
  registerDevice,
  signUpWithDevice,
  type TestDevice,
} from './support/graphql.js';
import {
  describeE2E,
  type GraphqlResponse,
  startTestApp,
  type TestApp,
} from './support/test-app.js';

const UPLOAD = `mutation ($input: UploadKeyPackagesInput!) {
  uploadKeyPackages(input: $input) { available lastResort lowWater low }
}`;
const COUNT = `query ($deviceId: ID!) { keyPackageCount(deviceId: $deviceId) { available lastResort low } }`;
const CLAIM = `mutation ($input: ClaimKeyPackagesInput!) {
  claimKeyPackages(input: $input) {
    keyPackages { userId deviceId identity keyPackage ref lastResort }
    exhaustedDevices { userId deviceId identity }
    usersWithoutDevices
  }
}`;

interface Claim {
  keyPackages: {
    userId: string;
    deviceId: string;
    identity: string;
    keyPackage: string;
    ref: string;
    lastResort: boolean;
  }[];
  exhaustedDevices: { deviceId: string }[];
  usersWithoutDevices: string[];
}
interface Count {
  available: number;
  lastResort: boolean;
  low: boolean;
}

/** A device that runs MLS: the API account plus a ts-mls client with its identity. */
interface MlsDevice extends TestDevice {
  mls: MlsMember;
}

async function mlsDevice(app: TestApp, base?: TestDevice): Promise<MlsDevice> {
  const device = base ?? (await signUpWithDevice(app));
  return { ...device, mls: await MlsMember.create(device.identity) };
}

function upload(
  app: TestApp,
  device: TestDevice,
  keyPackages: Uint8Array[],
  lastResort?: Uint8Array,
) {
  return app.gql<{ uploadKeyPackages: Count }>(
    UPLOAD,
    {
      input: {
        deviceId: device.deviceId,
        keyPackages: keyPackages.map(b64),
        ...(lastResort === undefined ? {} : { lastResort: b64(lastResort) }),
      },
    },
    device.token,
  );
}

async function count(app: TestApp, device: TestDevice): Promise<Count> {
  return dataOf(
    await app.gql<{ keyPackageCount: Count }>(COUNT, { deviceId: device.deviceId }, device.token),
  ).keyPackageCount;
}

function claim(app: TestApp, claimer: TestDevice, userIds: string[]) {
  return app.gql<{ claimKeyPackages: Claim }>(
    CLAIM,
    { input: { deviceId: claimer.deviceId, userIds } },
    claimer.token,
  );
}

describeE2E('key packages', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('stores a validated batch, binds the signature key and counts', async () => {
    const alice = await mlsDevice(app);
    const stored = dataOf(
      await upload(
        app,
        alice,
        await alice.mls.keyPackages(5),
        await alice.mls.lastResortKeyPackage(),
      ),
    );
    expect(stored.uploadKeyPackages).toEqual({
      available: 5,
      lastResort: true,
      lowWater: 10,
      low: true,
    });
    const devices = await app.gql<{ devices: { signatureKey: string }[] }>(
      `{ devices { signatureKey } }`,
      {},
      alice.token,
    );
    expect(dataOf(devices).devices[0]?.signatureKey).toBe(b64(alice.mls.signaturePublicKey));
    expect(await count(app, alice)).toEqual({ available: 5, lastResort: true, low: true });
  });

  it('hands out one key package per device of each user, never the claimer’s own, oldest first', async () => {
    const bob = await mlsDevice(app);
    const bobPhone = await mlsDevice(app, { ...bob, ...(await registerDevice(app, bob.token)) });
    const bobPackages = await bob.mls.keyPackages(3);
    dataOf(await upload(app, bob, bobPackages));
    dataOf(await upload(app, bobPhone, await bobPhone.mls.keyPackages(3)));
    const carol = await mlsDevice(app);

    const claimed = dataOf(await claim(app, carol, [bob.userId])).claimKeyPackages;
    expect(claimed.keyPackages.map((kp) => kp.deviceId).sort()).toEqual(
      [bob.deviceId, bobPhone.deviceId].sort(),
    );
    const fromLaptop = claimed.keyPackages.find((kp) => kp.deviceId === bob.deviceId);
    expect(fromLaptop).toMatchObject({
      userId: bob.userId,
      identity: bob.identity,
      lastResort: false,
    });
    expect(fromLaptop?.keyPackage).toBe(b64(bobPackages[0] ?? new Uint8Array()));
    expect(claimed.exhaustedDevices).toEqual([]);
    expect((await count(app, bob)).available).toBe(2);

    // Bob's phone claims for Bob's own user (to add his laptop to a group): never itself.
    const own = dataOf(await claim(app, bobPhone, [bob.userId])).claimKeyPackages;
    expect(own.keyPackages.map((kp) => kp.deviceId)).toEqual([bob.deviceId]);
    expect(own.keyPackages[0]?.keyPackage).toBe(b64(bobPackages[1] ?? new Uint8Array()));
  });

  it('falls back to the last-resort key package without consuming it, and reports devices with nothing', async () => {
    const dave = await mlsDevice(app);
    const [only] = await dave.mls.keyPackages(1);
    const lastResort = await dave.mls.lastResortKeyPackage();
    dataOf(await upload(app, dave, only ? [only] : [], lastResort));
    const empty = await mlsDevice(app);
    const deviceless = dataOf(
      await app.gql<{ signUp: { user: { id: string } } }>(
        `mutation { signUp(input: { username: "deviceless", password: "correct horse battery" }) { user { id } } }`,
      ),
    ).signUp.user.id;
    const claimer = await mlsDevice(app);

    const first = dataOf(await claim(app, claimer, [dave.userId])).claimKeyPackages;
    expect(first.keyPackages[0]).toMatchObject({
      lastResort: false,
      keyPackage: b64(only ?? new Uint8Array()),
    });
    for (let round = 0; round < 2; round++) {
      const next = dataOf(
        await claim(app, claimer, [dave.userId, empty.userId, deviceless]),
      ).claimKeyPackages;
      expect(next.keyPackages).toHaveLength(1);
      expect(next.keyPackages[0]).toMatchObject({
        deviceId: dave.deviceId,
        lastResort: true,
        keyPackage: b64(lastResort),
      });
      expect(next.exhaustedDevices.map((device) => device.deviceId)).toEqual([empty.deviceId]);
      expect(next.usersWithoutDevices).toEqual([deviceless]);
    }
    expect(await count(app, dave)).toEqual({ available: 0, lastResort: true, low: true });
    const unknown = await claim(app, claimer, ['00000000-0000-4000-8000-000000000000']);
    expect(errorCodeOf(unknown)).toBe('NOT_FOUND');
  });

  it('never hands out an expired key package, and purges it', async () => {
    const erin = await mlsDevice(app);
    // Within the clock-skew allowance, so accepted, but already past its end.
    const [stale] = await erin.mls.keyPackages(1, { notAfter: new Date(Date.now() - 30_000) });
    dataOf(await upload(app, erin, stale ? [stale] : []));
    expect((await count(app, erin)).available).toBe(0);
    const claimer = await mlsDevice(app);
    const claimed = dataOf(await claim(app, claimer, [erin.userId])).claimKeyPackages;
    expect(claimed.keyPackages).toEqual([]);
    expect(claimed.exhaustedDevices.map((device) => device.deviceId)).toEqual([erin.deviceId]);
  });

  it('rejects bad key packages with INVALID_KEY_PACKAGE naming the entry, and stores nothing of the batch', async () => {
    const frank = await mlsDevice(app);
    const other = await mlsDevice(app);
    const good = await frank.mls.keyPackages(2);
    const hour = 3600_000;
    const cases: [string, () => Promise<Uint8Array>][] = [
      [
        'BAD_SIGNATURE',
        async () => tamperSignature((await frank.mls.keyPackages(1))[0] ?? new Uint8Array()),
      ],
      [
        'BAD_LEAF_SIGNATURE',
        async () =>
          (await frank.mls.keyPackages(1, { breakLeafNodeSignature: true }))[0] ?? new Uint8Array(),
      ],
      [
        'WRONG_IDENTITY',
        async () =>
          (await frank.mls.keyPackages(1, { identity: other.identity }))[0] ?? new Uint8Array(),
      ],
      [
        'WRONG_SIGNATURE_KEY',
        async () =>
          (
            await frank.mls.keyPackages(1, {
              signatureKeyPair: await frank.mls.newSignatureKeyPair(),
            })
          )[0] ?? new Uint8Array(),
      ],
      [
        'EXPIRED',
        async () =>
          (
            await frank.mls.keyPackages(1, {
              notBefore: new Date(Date.now() - 48 * hour),
              notAfter: new Date(Date.now() - 24 * hour),
            })
          )[0] ?? new Uint8Array(),
      ],
      [
        'NOT_YET_VALID',
        async () =>
          (await frank.mls.keyPackages(1, { notBefore: new Date(Date.now() + 24 * hour) }))[0] ??
          new Uint8Array(),
      ],
      [
        'LIFETIME_TOO_LONG',
        async () =>
          (
            await frank.mls.keyPackages(1, { notAfter: new Date(Date.now() + 365 * 24 * hour) })
          )[0] ?? new Uint8Array(),
      ],
      [
        'UNSUPPORTED_CIPHERSUITE',
        async () => {
          const p384 = await MlsMember.create(frank.identity, {
            ciphersuite: 'MLS_256_DHKEMP384_AES256GCM_SHA384_P384',
          });
          return (await p384.keyPackages(1))[0] ?? new Uint8Array();
        },
      ],
      // A well-formed MLSMessage header (mls10, mls_key_package) followed by garbage.
      [
        'DECODE',
        () => Promise.resolve(Buffer.concat([Buffer.from([0, 1, 0, 5]), randomBytes(200)])),
      ],
      [
        'TRAILING_BYTES',
        () => Promise.resolve(Buffer.concat([good[0] ?? new Uint8Array(), Buffer.from([0])])),
      ],
      ['DUPLICATE', () => Promise.resolve(good[0] ?? new Uint8Array())],
    ];
    for (const [reason, make] of cases) {
      const response = await upload(app, frank, [...good, await make()]);
      expect(errorCodeOf(response), reason).toBe('INVALID_KEY_PACKAGE');
      expect(response.errors?.[0]?.extensions).toMatchObject({ reason, index: 2 });
    }
    const badLastResort = await upload(
      app,
      frank,
      good,
      tamperSignature(await frank.mls.lastResortKeyPackage()),
    );
    expect(badLastResort.errors?.[0]?.extensions).toMatchObject({
      reason: 'BAD_SIGNATURE',
      lastResort: true,
    });
    expect(await count(app, frank)).toEqual({ available: 0, lastResort: false, low: true });
    const devices = await app.gql<{ devices: { signatureKey: string | null }[] }>(
      `{ devices { signatureKey } }`,
      {},
      frank.token,
    );
    expect(dataOf(devices).devices[0]?.signatureKey).toBeNull();

    // A key package another device uploaded cannot be uploaded again by anyone.
    dataOf(await upload(app, frank, good));
    expect(errorCodeOf(await upload(app, frank, [good[1] ?? new Uint8Array()]))).toBe(
      'INVALID_KEY_PACKAGE',
    );
    expect(await count(app, frank)).toMatchObject({ available: 2 });
  });

  it('keeps the last-resort marker and the slot in agreement, both ways', async () => {
    const grace = await mlsDevice(app);
    const [ordinary = new Uint8Array()] = await grace.mls.keyPackages(1);
    const marked = await grace.mls.lastResortKeyPackage();

    // A last-resort key package in the normal slot would be consumed like any other, and one
    // without the marker in the last-resort slot would be reused by claimers against its intent.
    const inNormalSlot = await upload(app, grace, [ordinary, marked]);
    expect(errorCodeOf(inNormalSlot)).toBe('INVALID_KEY_PACKAGE');
    expect(inNormalSlot.errors?.[0]?.extensions).toMatchObject({
      reason: 'UNEXPECTED_LAST_RESORT',
      index: 1,
    });
    const unmarked = await upload(app, grace, [], ordinary);
    expect(errorCodeOf(unmarked)).toBe('INVALID_KEY_PACKAGE');
    expect(unmarked.errors?.[0]?.extensions).toMatchObject({
      reason: 'NOT_LAST_RESORT',
      lastResort: true,
    });
    expect(await count(app, grace)).toEqual({ available: 0, lastResort: false, low: true });

    dataOf(await upload(app, grace, [ordinary], marked));
    expect(await count(app, grace)).toEqual({ available: 1, lastResort: true, low: true });
  });

  it('hands 100 concurrent claims against 50 key packages 50 distinct ones and last-resort for the rest', async () => {
    const limits = { ...app.config.limits, claimsPerMinute: 1000, claimsPerTargetPerMinute: 1000 };
    const raced = await startTestApp({ limits });
    try {
      const target = await mlsDevice(raced);
      const packages = await target.mls.keyPackages(50);
      const lastResort = await target.mls.lastResortKeyPackage();
      dataOf(await upload(raced, target, packages, lastResort));
      const claimers = await Promise.all(Array.from({ length: 4 }, () => signUpWithDevice(raced)));
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          claim(raced, claimers[i % claimers.length] as TestDevice, [target.userId]),
        ),
      );
      const handedOut = results.map((result) => {
        const [kp] = dataOf(result).claimKeyPackages.keyPackages;
        if (kp === undefined) throw new Error('nothing handed out');
        return kp;
      });
      const ordinary = handedOut.filter((kp) => !kp.lastResort).map((kp) => kp.keyPackage);
      expect(ordinary).toHaveLength(50);
      expect(new Set(ordinary).size).toBe(50);
      expect(new Set(ordinary)).toEqual(new Set(packages.map(b64)));
      expect(
        handedOut.filter((kp) => kp.lastResort).every((kp) => kp.keyPackage === b64(lastResort)),
      ).toBe(true);
      expect(await count(raced, target)).toEqual({ available: 0, lastResort: true, low: true });
    } finally {
      await raced.close();
    }
  });

  it('lets only the owner act for a device (no token, another user, a deleted device)', async () => {
    const grace = await mlsDevice(app);
    const mallory = await mlsDevice(app);
    const packages = await grace.mls.keyPackages(1);
    expect(
      errorCodeOf(
        await app.gql(UPLOAD, {
          input: { deviceId: grace.deviceId, keyPackages: packages.map(b64) },
        }),
      ),
    ).toBe('UNAUTHENTICATED');
    expect(errorCodeOf(await app.gql(COUNT, { deviceId: grace.deviceId }))).toBe('UNAUTHENTICATED');
    expect(
      errorCodeOf(
        await app.gql(CLAIM, { input: { deviceId: grace.deviceId, userIds: [mallory.userId] } }),
      ),
    ).toBe('UNAUTHENTICATED');
    const asMallory = { ...mallory, deviceId: grace.deviceId };
    expect(errorCodeOf(await upload(app, asMallory, packages))).toBe('FORBIDDEN');
    expect(errorCodeOf(await app.gql(COUNT, { deviceId: grace.deviceId }, mallory.token))).toBe(
      'FORBIDDEN',
    );
    expect(errorCodeOf(await claim(app, asMallory, [grace.userId]))).toBe('FORBIDDEN');
    expect(await count(app, grace)).toMatchObject({ available: 0 });

    dataOf(await upload(app, grace, packages));
    dataOf(
      await app.gql(
        `mutation ($id: ID!) { deleteDevice(deviceId: $id) }`,
        { id: grace.deviceId },
        grace.token,
      ),
    );
    expect(errorCodeOf(await upload(app, grace, await grace.mls.keyPackages(1)))).toBe('NOT_FOUND');
    expect(errorCodeOf(await app.gql(COUNT, { deviceId: grace.deviceId }, grace.token))).toBe(
      'NOT_FOUND',
    );
    expect(errorCodeOf(await claim(app, grace, [mallory.userId]))).toBe('NOT_FOUND');
    // The deleted device's key packages are gone with it.
    const claimed = dataOf(await claim(app, mallory, [grace.userId])).claimKeyPackages;
    expect(claimed.usersWithoutDevices).toEqual([grace.userId]);
  });

  it('enforces limits and rate limits with typed errors', async () => {
    const limits = {
      ...app.config.limits,
      keyPackagesPerUpload: 3,
      keyPackageBytes: 1024,
      keyPackagesPerDevice: 4,
      usersPerClaim: 2,
      claimsPerMinute: 5,
      claimsPerTargetPerMinute: 2,
      bodyBytes: 64 * 1024,
    };
    const limited = await startTestApp({ limits });
    try {
      const henry = await mlsDevice(limited);
      expect(errorCodeOf(await upload(limited, henry, await henry.mls.keyPackages(4)))).toBe(
        'LIMIT_EXCEEDED',
      );
      const big = await upload(limited, henry, [randomBytes(2048)]);
      expect(errorCodeOf(big)).toBe('LIMIT_EXCEEDED');
      expect(big.errors?.[0]?.extensions).toMatchObject({ index: 0, limit: 1024 });
      dataOf(await upload(limited, henry, await henry.mls.keyPackages(3)));
      expect(errorCodeOf(await upload(limited, henry, await henry.mls.keyPackages(2)))).toBe(
        'LIMIT_EXCEEDED',
      );
      expect(await count(limited, henry)).toMatchObject({ available: 3 });

      const ids = await Promise.all(
        Array.from({ length: 3 }, async () => (await signUpWithDevice(limited)).userId),
      );
      expect(errorCodeOf(await claim(limited, henry, ids))).toBe('LIMIT_EXCEEDED');
      const ivy = await signUpWithDevice(limited);
      dataOf(await claim(limited, ivy, [henry.userId]));
      dataOf(await claim(limited, ivy, [henry.userId]));
      const third = await claim(limited, ivy, [henry.userId]);
      expect(errorCodeOf(third)).toBe('RATE_LIMITED');
      expect(third.errors?.[0]?.extensions?.retryAfterSeconds).toBeGreaterThan(0);
      // The rejected claim consumed nothing.
      expect(await count(limited, henry)).toMatchObject({ available: 1 });
      // Two counted claims so far (rejected ones count nothing); three more fill the window of 5.
      for (const id of ids) dataOf(await claim(limited, ivy, [id]));
      expect(errorCodeOf(await claim(limited, ivy, [ids[0] ?? '']))).toBe('RATE_LIMITED');

      const response = await fetch(limited.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ me { id } }', padding: 'x'.repeat(70 * 1024) }),
      });
      expect(response.status).toBe(413);
      expect(errorCodeOf((await response.json()) as GraphqlResponse<unknown>)).toBe(
        'LIMIT_EXCEEDED',
      );
    } finally {
      await limited.close();
    }
  });

  it('computes the KeyPackageRef the client computes', async () => {
    const jack = await mlsDevice(app);
    const [kp] = await jack.mls.keyPackages(1);
    if (kp === undefined) throw new Error('no key package');
    dataOf(await upload(app, jack, [kp]));
    const claimer = await signUpWithDevice(app);
    const [claimed] = dataOf(await claim(app, claimer, [jack.userId])).claimKeyPackages.keyPackages;
    const { keyPackageRef } = await import('@parley/mls-member');
    expect(toHex(Buffer.from(claimed?.ref ?? '', 'base64'))).toBe(toHex(await keyPackageRef(kp)));
  });
});
