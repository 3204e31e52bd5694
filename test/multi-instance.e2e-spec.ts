import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataOf } from './support/graphql.js';
import type { CommitBundle, MlsGroup } from '@parley/mls-member';
import { ParleyDevice } from './support/parley-client.js';
import { startTwoInstances, type TestApp, twoInstancesSkipReason } from './support/test-app.js';

if (twoInstancesSkipReason !== undefined)
  console.warn(`multi-instance suite skipped: ${twoInstancesSkipReason}`);

/** Two server instances on one PostgreSQL database, joined by Redis pub/sub. */
describe.skipIf(twoInstancesSkipReason !== undefined)('two instances', () => {
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    [a, b] = await startTwoInstances();
  });
  afterAll(async () => {
    await b.close();
    await a.close();
  });

  async function group(size: number): Promise<{
    conversationId: string;
    members: { device: ParleyDevice; group: MlsGroup; cursor: number }[];
  }> {
    const devices = await Promise.all(
      Array.from({ length: size }, (_, i) => ParleyDevice.create(i % 2 === 0 ? a : b)),
    );
    const [creator, ...others] = devices as [ParleyDevice, ...ParleyDevice[]];
    await Promise.all(others.map((device) => device.uploadKeyPackages(1)));
    const { conversationId, group: creatorGroup } = await creator.createConversation();
    const keyPackages = await creator.claim(others.map((device) => device.userId));
    dataOf(await creator.submit(conversationId, await creatorGroup.addMembers(keyPackages)));
    creatorGroup.confirmCommit();
    const members = [{ device: creator, group: creatorGroup, cursor: 1 }];
    for (const device of others) {
      const joined = await device.joinFromWelcome();
      members.push({ device, group: joined.group, cursor: joined.commitSeq });
    }
    return { conversationId, members };
  }

  it('delivers to a subscriber on A what is posted on B', async () => {
    const { conversationId, members } = await group(2);
    const [first, second] = members as [(typeof members)[number], (typeof members)[number]];
    const onA = await first.device.via(a).subscribe();
    const seq = await second.device.via(b).say(second.group, conversationId, 'across instances');
    const event = await onA.waitFor((live) => live.entry?.seq === seq);
    const processed = await first.group.processMessage(
      Buffer.from(event.entry?.message ?? '', 'base64'),
    );
    expect(processed.kind === 'application' && Buffer.from(processed.plaintext).toString()).toBe(
      'across instances',
    );
    await onA.close();
  });

  it('accepts exactly one of racing commits split across A and B', async () => {
    const { conversationId, members } = await group(10);
    const bundles = await Promise.all(members.map((member) => member.group.update()));
    const results = await Promise.all(
      members.map((member, i) =>
        member.device.via(i % 2 === 0 ? a : b).submit(conversationId, bundles[i] as CommitBundle),
      ),
    );
    expect(results.filter((result) => result.errors === undefined)).toHaveLength(1);
    expect(
      results.filter((result) => result.errors?.[0]?.extensions?.code === 'STALE_EPOCH'),
    ).toHaveLength(9);
    for (const member of members) {
      await member.device.catchUp(member.group, conversationId, member.cursor);
      if (member.group.hasPendingCommit) member.group.discardCommit();
    }
    expect(new Set(members.map((member) => member.group.epoch)).size).toBe(1);
  });

  it('hands out each key package once when claims race on both instances', async () => {
    const target = await ParleyDevice.create(a);
    await target.uploadKeyPackages(20);
    const claimers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => ParleyDevice.create(i % 2 === 0 ? a : b)),
    );
    const handed = await Promise.all(claimers.map((claimer) => claimer.claim([target.userId])));
    const packages = handed.flat().map((bytes) => Buffer.from(bytes).toString('base64'));
    // 20 ordinary ones, each once; no last resort was uploaded, so the rest got nothing.
    expect(packages).toHaveLength(20);
    expect(new Set(packages).size).toBe(20);
  });
});
