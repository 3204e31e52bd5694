import { afterAll, beforeAll, expect, it } from 'vitest';
import { RetentionService } from '../apps/server/src/messages/retention.service.js';
import { dataOf } from './support/graphql.js';
import type { MlsGroup } from '@parley/mls-member';
import { ParleyDevice } from './support/parley-client.js';
import { describeE2E, startTestApp, type TestApp, testDatabase } from './support/test-app.js';

describeE2E(`join-point reads (${testDatabase})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  /** Alice alone posts `before` messages, then adds Bob (listening live) at seq S. */
  async function addedLater(before: number) {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    await bob.uploadKeyPackages(1);
    const bobLive = await bob.subscribe();
    const { conversationId, group } = await alice.createConversation();
    for (let i = 0; i < before; i++) await alice.say(group, conversationId, `before ${i}`);
    const bundle = await group.addMembers(await alice.claim([bob.userId]));
    const joinSeq = dataOf(await alice.submit(conversationId, bundle)).submitCommitBundle.seq;
    group.confirmCommit();
    const joined = await bob.joinFromWelcome();
    expect(joined.commitSeq).toBe(joinSeq);
    return {
      alice,
      bob,
      bobLive,
      conversationId,
      aliceGroup: group,
      bobGroup: joined.group,
      joinSeq,
    };
  }

  async function decrypt(group: MlsGroup, message: string): Promise<string> {
    const processed = await group.processMessage(Buffer.from(message, 'base64'));
    return processed.kind === 'application' ? Buffer.from(processed.plaintext).toString() : '';
  }

  it('shows a member added at seq S nothing at or before S, in pages and live', async () => {
    const { alice, bob, bobLive, conversationId, aliceGroup, bobGroup, joinSeq } =
      await addedLater(3);
    expect(joinSeq).toBe(4);
    // Reading from the start begins after the join point: no entries, and no gap marker, since
    // nothing Bob could have read is lost.
    for (const after of [0, 2, joinSeq]) {
      const { messages } = dataOf(await bob.page(conversationId, after));
      expect(messages).toEqual({ gap: null, entries: [], hasMore: false, lastSeq: joinSeq });
    }
    const later = [
      await alice.say(aliceGroup, conversationId, 'after 1'),
      await alice.say(aliceGroup, conversationId, 'after 2'),
    ];
    const entries = await bob.entries(conversationId, 0);
    expect(entries.map((entry) => entry.seq)).toEqual(later);
    expect(await Promise.all(entries.map((entry) => decrypt(bobGroup, entry.message)))).toEqual([
      'after 1',
      'after 2',
    ]);
    // The creator, in from seq 0, still reads everything.
    expect((await alice.entries(conversationId, 0)).map((entry) => entry.seq)).toEqual([
      1, 2, 3, 4, 5, 6,
    ]);
    // Live: only what follows the join point, each once.
    await bobLive.waitFor((event) => event.entry?.seq === later[1]);
    const heard = bobLive.events
      .filter((event) => event.entry?.conversationId === conversationId)
      .map((event) => event.entry?.seq);
    expect(heard).toEqual(later);
    // The GroupInfo stays available to the new member (it is the group's current state).
    const { groupInfo } = dataOf(
      await bob.gql<{ groupInfo: string | null }>(
        `query ($deviceId: ID!, $conversationId: ID!) { groupInfo(deviceId: $deviceId, conversationId: $conversationId) }`,
        { conversationId },
      ),
    );
    expect(groupInfo).not.toBeNull();
    await bobLive.close();
  });

  it('hears nothing from before the join point on a subscription opened later', async () => {
    const { alice, bob, bobLive, conversationId, aliceGroup, joinSeq } = await addedLater(2);
    await bobLive.close();
    const live = await bob.subscribe();
    const next = await alice.say(aliceGroup, conversationId, 'new');
    await live.waitFor((event) => event.entry?.seq === next);
    const seqs = live.events.flatMap((event) => (event.entry ? [event.entry.seq] : []));
    expect(seqs).toEqual([next]);
    expect(next).toBe(joinSeq + 1);
    await live.close();
  });

  it('marks a retention gap only for entries after the join point', async () => {
    const { alice, bob, bobLive, conversationId, aliceGroup, joinSeq } = await addedLater(3);
    await bobLive.close();
    const later: number[] = [];
    for (let i = 0; i < 3; i++) later.push(await alice.say(aliceGroup, conversationId, `m${i}`));
    const retention = app.app.get(RetentionService);
    // Deleting what came before Bob joined is no gap for him.
    await retention.deleteThrough(conversationId, String(joinSeq));
    expect(dataOf(await bob.page(conversationId, 0)).messages.gap).toBeNull();
    expect((await bob.entries(conversationId, 0)).map((entry) => entry.seq)).toEqual(later);
    // Deleting what he could have read is one, from his join point on.
    await retention.deleteThrough(conversationId, String(later[0]));
    const { messages } = dataOf(await bob.page(conversationId, 0));
    expect(messages.gap).toEqual({ fromSeq: later[0], toSeq: later[0] });
    expect(messages.entries.map((entry) => entry.seq)).toEqual(later.slice(1));
    expect(dataOf(await alice.page(conversationId, 0)).messages.gap).toEqual({
      fromSeq: 1,
      toSeq: later[0],
    });
  });
});
