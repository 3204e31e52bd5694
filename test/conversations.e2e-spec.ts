import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RetentionService } from '../apps/server/src/messages/retention.service.js';
import { b64, dataOf, errorCodeOf } from './support/graphql.js';
import type { CommitBundle } from '@parley/mls-member';
import { buildGroup, type GroupMember as Member, ParleyDevice } from './support/parley-client.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

const CONVERSATION = `query ($deviceId: ID!, $conversationId: ID!) {
  conversation(deviceId: $deviceId, conversationId: $conversationId) { epoch lastSeq ackedSeq members { deviceId leafIndex } }
}`;

describeE2E('conversations', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(
      {},
      process.env.DEBUG_LOGS
        ? { logger: new (await import('@nestjs/common')).ConsoleLogger() }
        : {},
    );
  });
  afterAll(async () => {
    await app.close();
  });

  it('lets three users build a group, talk in order, and remove one who then reads, posts and hears nothing', async () => {
    const { conversationId, members } = await buildGroup(app, 3);
    const [alice, bob, carol] = members as [Member, Member, Member];
    const carolLive = await carol.device.subscribe();
    const bobLive = await bob.device.subscribe();

    const view = dataOf(
      await bob.device.gql<{ conversation: { epoch: number; members: { deviceId: string }[] } }>(
        CONVERSATION,
        { conversationId },
      ),
    );
    expect(view.conversation.epoch).toBe(1);
    expect(view.conversation.members.map((member) => member.deviceId).sort()).toEqual(
      members.map((member) => member.device.deviceId).sort(),
    );

    const said: string[] = [];
    for (let round = 0; round < 2; round++) {
      for (const member of members) {
        const text = `${round}: hello from ${member.device.deviceId}`;
        said.push(text);
        await member.device.say(member.group, conversationId, text);
      }
    }
    for (const member of members) {
      const { texts, cursor } = await member.device.catchUp(
        member.group,
        conversationId,
        member.cursor,
      );
      expect(texts).toEqual(said);
      member.cursor = cursor;
      dataOf(
        await member.device.gql(
          `mutation ($deviceId: ID!, $c: ID!, $s: SafeInt!) { acknowledge(deviceId: $deviceId, conversationId: $c, seq: $s) }`,
          { c: conversationId, s: cursor },
        ),
      );
    }
    const lastMessage = await bobLive.waitFor((event) => event.entry?.seq === alice.cursor);
    expect(lastMessage.entry?.kind).toBe('APPLICATION');

    // Alice removes Carol.
    const removal = await alice.group.removeMembers([carol.device.identity]);
    const removed = dataOf(await alice.device.submit(conversationId, removal)).submitCommitBundle;
    alice.group.confirmCommit();
    expect(removed.epoch).toBe(2);
    const rosterEvent = await carolLive.waitFor((event) => event.__typename === 'RosterEvent');
    expect(rosterEvent.removedDeviceIds).toEqual([carol.device.deviceId]);
    await bob.device.catchUp(bob.group, conversationId, bob.cursor);
    // Carol's leaf is blank now (wherever the claim order put her).
    expect(
      bob.group
        .members()
        .filter((identity) => identity !== undefined)
        .sort(),
    ).toEqual([alice.device.identity, bob.device.identity].sort());

    const afterRemoval = await bob.device.say(bob.group, conversationId, 'carol cannot read this');
    await bobLive.waitFor((event) => event.entry?.seq === afterRemoval);
    expect(errorCodeOf(await carol.device.page(conversationId))).toBe('NOT_A_MEMBER');
    expect(
      errorCodeOf(
        await carol.device.send(conversationId, await carol.group.encrypt('still here?')),
      ),
    ).toBe('NOT_A_MEMBER');
    expect(
      errorCodeOf(
        await carol.device.gql(
          `query ($deviceId: ID!, $c: ID!) { groupInfo(deviceId: $deviceId, conversationId: $c) }`,
          { c: conversationId },
        ),
      ),
    ).toBe('NOT_A_MEMBER');
    expect(
      carolLive.events.some((event) => event.entry !== undefined && event.entry.seq > removed.seq),
    ).toBe(false);
    expect(carolLive.errors).toEqual([]);
    await Promise.all([carolLive.close(), bobLive.close()]);
  });

  it('rejects a stale commit with STALE_EPOCH and the current epoch, and a non-member’s message', async () => {
    const { conversationId, members } = await buildGroup(app, 2);
    const [alice, bob] = members as [Member, Member];
    const aliceUpdate = await alice.group.update();
    const bobUpdate = await bob.group.update();
    dataOf(await alice.device.submit(conversationId, aliceUpdate));
    alice.group.confirmCommit();
    const stale = await bob.device.submit(conversationId, bobUpdate);
    expect(errorCodeOf(stale)).toBe('STALE_EPOCH');
    expect(stale.errors?.[0]?.extensions?.currentEpoch).toBe(2);
    bob.group.discardCommit();
    await bob.device.catchUp(bob.group, conversationId, bob.cursor);
    expect(bob.group.epoch).toBe(2n);

    const mallory = await ParleyDevice.create(app);
    const outsider = await mallory.mls.createGroup(randomBytes(16));
    expect(
      errorCodeOf(await mallory.send(conversationId, await outsider.encrypt('let me in'))),
    ).toBe('NOT_A_MEMBER');
    expect(errorCodeOf(await mallory.page(conversationId))).toBe('NOT_A_MEMBER');
  });

  it('accepts exactly one of 20 commits racing for one epoch, and the group goes on', async () => {
    const { conversationId, members } = await buildGroup(app, 20);
    const startEpoch = members[0]?.group.epoch ?? 0n;
    const bundles = await Promise.all(members.map((member) => member.group.update()));
    const results = await Promise.all(
      members.map((member, i) => member.device.submit(conversationId, bundles[i] as CommitBundle)),
    );
    const winners = results.filter((result) => result.errors === undefined);
    expect(winners).toHaveLength(1);
    expect(
      results.filter((result) => result.errors?.[0]?.extensions?.code === 'STALE_EPOCH'),
    ).toHaveLength(19);
    for (const member of members) {
      await member.device
        .catchUp(member.group, conversationId, member.cursor)
        .then(({ cursor }) => {
          member.cursor = cursor;
        });
      if (member.group.hasPendingCommit) member.group.discardCommit();
      expect(member.group.epoch).toBe(startEpoch + 1n);
    }
    const [first, second] = members as [Member, Member];
    await first.device.say(first.group, conversationId, 'after the race');
    expect(
      (await second.device.catchUp(second.group, conversationId, second.cursor)).texts,
    ).toEqual(['after the race']);
  });

  it('rejects bad input with typed errors and stores nothing', async () => {
    const { conversationId, members } = await buildGroup(app, 2);
    const [alice, bob] = members as [Member, Member];
    const other = await buildGroup(app, 1);
    const before = dataOf(
      await alice.device.gql<{ conversation: { epoch: number; lastSeq: number } }>(CONVERSATION, {
        conversationId,
      }),
    ).conversation;
    const good = await alice.group.update();
    const message = await alice.group.encrypt('valid');
    const garbage = randomBytes(300);

    const commitCases: [string, Parameters<ParleyDevice['submit']>[1]][] = [
      ['INVALID_COMMIT', { ...good, commit: good.commit.subarray(0, good.commit.length - 10) }],
      ['INVALID_COMMIT', { ...good, commit: garbage }],
      ['INVALID_COMMIT', { ...good, commit: Buffer.concat([good.commit, Buffer.from([0])]) }],
      ['INVALID_COMMIT', { ...good, commit: message }],
      ['INVALID_GROUP_INFO', { ...good, groupInfo: await alice.group.groupInfo() }],
      ['INVALID_GROUP_INFO', { ...good, groupInfo: garbage }],
      ['INVALID_WELCOME', { ...good, welcome: garbage }],
    ];
    // A Welcome for refs Parley never handed out, from a commit in another group.
    const stranger = await ParleyDevice.create(app);
    await stranger.uploadKeyPackages(1);
    const [otherCreator] = other.members as [Member];
    const [strangerKp] = (await otherCreator.device.claim([stranger.userId])) as [Uint8Array];
    const foreign = await otherCreator.group.addMembers([strangerKp]);
    otherCreator.group.discardCommit();
    commitCases.push(['INVALID_WELCOME', { ...good, welcome: foreign.welcome }]);
    commitCases.push(['INVALID_COMMIT', foreign]);
    for (const [code, bundle] of commitCases) {
      expect(errorCodeOf(await alice.device.submit(conversationId, bundle)), code).toBe(code);
    }
    const limited = await startTestApp({
      limits: { ...app.config.limits, commitBundleBytes: 4096, messageBytes: 512 },
    });
    try {
      const small = await buildGroup(limited, 1);
      const [owner] = small.members as [Member];
      const bundle = await owner.group.update();
      const padded = { ...bundle, groupInfo: Buffer.concat([bundle.groupInfo, randomBytes(4096)]) };
      expect(errorCodeOf(await owner.device.submit(small.conversationId, padded))).toBe(
        'LIMIT_EXCEEDED',
      );
      const long = await owner.group.encrypt('x'.repeat(1024));
      expect(errorCodeOf(await owner.device.send(small.conversationId, long))).toBe(
        'LIMIT_EXCEEDED',
      );
    } finally {
      await limited.close();
    }

    const messageCases: [string, Uint8Array][] = [
      ['INVALID_MESSAGE', garbage],
      ['INVALID_MESSAGE', message.subarray(0, 20)],
      ['INVALID_MESSAGE', good.commit],
      ['INVALID_MESSAGE', await otherCreator.group.encrypt('wrong group')],
    ];
    for (const [code, bytes] of messageCases) {
      expect(errorCodeOf(await alice.device.send(conversationId, bytes)), code).toBe(code);
    }
    const after = dataOf(
      await alice.device.gql<{ conversation: { epoch: number; lastSeq: number } }>(CONVERSATION, {
        conversationId,
      }),
    ).conversation;
    expect(after).toEqual(before);
    // The good bundle still goes through afterwards: nothing half-applied stood in its way.
    dataOf(await alice.device.submit(conversationId, good));
    alice.group.confirmCommit();
    expect((await bob.device.catchUp(bob.group, conversationId, bob.cursor)).texts).toEqual([]);
    expect(bob.group.epoch).toBe(alice.group.epoch);
  });

  it('refuses messages outside the epoch window', async () => {
    const { conversationId, members } = await buildGroup(app, 2);
    const [alice, bob] = members as [Member, Member];
    const old = await bob.group.encrypt('from epoch 1');
    for (let i = 0; i < 3; i++) {
      dataOf(await alice.device.submit(conversationId, await alice.group.update()));
      alice.group.confirmCommit();
    }
    const late = await bob.device.send(conversationId, old);
    expect(errorCodeOf(late)).toBe('INVALID_MESSAGE');
    expect(late.errors?.[0]?.extensions?.reason).toBe('EPOCH_OUT_OF_WINDOW');
  });

  it('tells a device whose cursor fell behind retention about the gap', async () => {
    const { conversationId, members } = await buildGroup(app, 2);
    const [alice, bob] = members as [Member, Member];
    for (let i = 0; i < 5; i++) await alice.device.say(alice.group, conversationId, `m${i}`);
    await app.app.get(RetentionService).deleteThrough(conversationId, '4');
    const { messages } = dataOf(await bob.device.page(conversationId, 1));
    expect(messages.gap).toEqual({ fromSeq: 2, toSeq: 4 });
    expect(messages.entries.map((entry) => entry.seq)).toEqual([5, 6]);
    expect(dataOf(await bob.device.page(conversationId, 4)).messages.gap).toBeNull();
  });

  it('stores each message once, whatever the group size, with one sequence shared with commits', async () => {
    const { conversationId, members } = await buildGroup(app, 6);
    const [alice] = members as [Member];
    const seq = await alice.device.say(alice.group, conversationId, 'once');
    const rows: { count: string }[] = await app.app
      .get(DataSource)
      .query(`SELECT count(*) AS "count" FROM "log_entries" WHERE "conversation_id" = $1`, [
        conversationId,
      ]);
    expect(rows[0]?.count).toBe('2');
    expect(seq).toBe(2);
    const sent = await Promise.all(
      Array.from({ length: 30 }, (_, i) => alice.group.encrypt(`burst ${i}`)),
    );
    const seqs = await Promise.all(
      sent.map(
        async (bytes) => dataOf(await alice.device.send(conversationId, bytes)).sendMessage.seq,
      ),
    );
    expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i + 3));
    const entries = await alice.device.entries(conversationId, 2);
    // Concurrent requests reach the server in no set order; each is stored once, in some order.
    expect(entries.map((entry) => entry.message).sort()).toEqual(sent.map(b64).sort());
  });

  it('delivers welcomes and key-package warnings live', async () => {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    await bob.uploadKeyPackages(1);
    const bobLive = await bob.subscribe();
    const { conversationId, group } = await alice.createConversation();
    const [kp] = (await alice.claim([bob.userId])) as [Uint8Array];
    const low = await bobLive.waitFor((event) => event.__typename === 'KeyPackagesLowEvent');
    expect(low.available).toBe(0);
    const bundle = await group.addMembers([kp]);
    const { seq } = dataOf(await alice.submit(conversationId, bundle)).submitCommitBundle;
    group.confirmCommit();
    const welcome = await bobLive.waitFor((event) => event.__typename === 'WelcomeEvent');
    expect(welcome).toMatchObject({ conversationId, commitSeq: seq });
    const joined = await bob.joinFromWelcome();
    const next = await alice.say(group, conversationId, 'welcome, bob');
    const live = await bobLive.waitFor((event) => event.entry?.seq === next);
    const processed = await joined.group.processMessage(
      Buffer.from(live.entry?.message ?? '', 'base64'),
    );
    expect(processed.kind === 'application' && Buffer.from(processed.plaintext).toString()).toBe(
      'welcome, bob',
    );
    await bobLive.close();
  });

  it('lets only the owner of a roster device read, post or subscribe', async () => {
    const { conversationId, members } = await buildGroup(app, 2);
    const [alice] = members as [Member];
    const mallory = await ParleyDevice.create(app);
    const query = `query ($deviceId: ID!, $c: ID!) { messages(deviceId: $deviceId, conversationId: $c) { lastSeq } }`;
    // Mallory's token naming Alice's device; no token at all; a conversation that does not exist.
    expect(
      errorCodeOf(
        await app.gql(query, { deviceId: alice.device.deviceId, c: conversationId }, mallory.token),
      ),
    ).toBe('FORBIDDEN');
    expect(
      errorCodeOf(await app.gql(query, { deviceId: alice.device.deviceId, c: conversationId })),
    ).toBe('UNAUTHENTICATED');
    expect(errorCodeOf(await alice.device.page('00000000-0000-4000-8000-000000000000'))).toBe(
      'NOT_FOUND',
    );
    expect(errorCodeOf(await alice.device.page('not-a-uuid'))).toBe('NOT_FOUND');
    const forged = await mallory.subscribeAs(alice.device.deviceId);
    expect(forged).toMatchObject([{ extensions: { code: 'FORBIDDEN' } }]);
    // A socket without a token is closed at its connection_init (4401), before any operation.
    const anonymous = await mallory.subscribeAs(mallory.deviceId, null);
    expect(anonymous).toMatchObject([{ code: 4401 }]);
  });

  it('resumes after a dropped subscription with nothing lost or duplicated', async () => {
    const { conversationId, members } = await buildGroup(app, 2);
    const [alice, bob] = members as [Member, Member];
    const first = await bob.device.subscribe();
    const seen = [await alice.device.say(alice.group, conversationId, 'one')];
    await first.waitFor((event) => event.entry?.seq === seen[0]);
    await first.close();
    for (const text of ['two', 'three'])
      seen.push(await alice.device.say(alice.group, conversationId, text));
    // Subscribe first, then page from the last entry heard live; entries heard twice are dropped by seq.
    const second = await bob.device.subscribe();
    seen.push(await alice.device.say(alice.group, conversationId, 'four'));
    const paged = await bob.device.entries(conversationId, seen[0]);
    await second.waitFor((event) => event.entry?.seq === seen[3]);
    const live = second.events.flatMap((event) => (event.entry === undefined ? [] : [event.entry]));
    const bySeq = new Map([...paged, ...live].map((entry) => [entry.seq, entry]));
    expect([...bySeq.keys()].sort((x, y) => x - y)).toEqual(seen.slice(1));
    const texts: string[] = [];
    for (const seq of [...bySeq.keys()].sort((x, y) => x - y)) {
      const processed = await bob.group.processMessage(
        Buffer.from(bySeq.get(seq)?.message ?? '', 'base64'),
      );
      if (processed.kind === 'application') texts.push(Buffer.from(processed.plaintext).toString());
    }
    // Bob had not processed 'one' yet either: the test reads it too, in order.
    expect(texts).toEqual(['two', 'three', 'four']);
    await second.close();
  });

  it('keeps a deleted device’s seat until a commit removes its leaf', async () => {
    const { conversationId, members } = await buildGroup(app, 3);
    const [alice, bob, carol] = members as [Member, Member, Member];
    dataOf(
      await carol.device.gql(`mutation ($deviceId: ID!) { deleteDevice(deviceId: $deviceId) }`),
    );
    expect(errorCodeOf(await carol.device.page(conversationId))).toBe('NOT_FOUND');
    // An update still matches the roster (the gone device's leaf is still in the tree) …
    dataOf(await alice.device.submit(conversationId, await alice.group.update()));
    alice.group.confirmCommit();
    // … and removing that leaf is accepted; the group goes on without it.
    const removal = await alice.group.removeMembers([carol.device.identity]);
    dataOf(await alice.device.submit(conversationId, removal));
    alice.group.confirmCommit();
    const seats: { device_id: string }[] = await app.app
      .get(DataSource)
      .query(`SELECT "device_id" FROM "conversation_members" WHERE "conversation_id" = $1`, [
        conversationId,
      ]);
    expect(seats.map((seat) => seat.device_id).sort()).toEqual(
      [alice.device.deviceId, bob.device.deviceId].sort(),
    );
    await bob.device.catchUp(bob.group, conversationId, bob.cursor);
    expect(bob.group.epoch).toBe(alice.group.epoch);
  });

  it('follows a conversation the subscribed device creates', async () => {
    const alice = await ParleyDevice.create(app);
    const live = await alice.subscribe();
    const { conversationId, group } = await alice.createConversation();
    const roster = await live.waitFor((event) => event.__typename === 'RosterEvent');
    expect(roster).toMatchObject({ conversationId, addedDeviceIds: [alice.deviceId] });
    const seq = await alice.say(group, conversationId, 'to myself');
    await live.waitFor((event) => event.entry?.seq === seq);
    await live.close();
  });

  it('starts a conversation without an epoch-0 GroupInfo; the first commit brings one', async () => {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    await bob.uploadKeyPackages(1);
    const { conversationId, group } = await alice.createConversation({ withGroupInfo: false });
    const groupInfoQuery = `query ($deviceId: ID!, $c: ID!) { groupInfo(deviceId: $deviceId, conversationId: $c) }`;
    expect(
      dataOf(await alice.gql<{ groupInfo: string | null }>(groupInfoQuery, { c: conversationId }))
        .groupInfo,
    ).toBeNull();
    const bundle = await group.addMembers(await alice.claim([bob.userId]));
    dataOf(await alice.submit(conversationId, bundle));
    group.confirmCommit();
    const { groupInfo } = dataOf(
      await alice.gql<{ groupInfo: string | null }>(groupInfoQuery, { c: conversationId }),
    );
    expect(groupInfo).toBe(b64(bundle.groupInfo));
    const joined = await bob.joinFromWelcome();
    expect(joined.conversationId).toBe(conversationId);

    const missing = await alice.gql(
      `mutation ($deviceId: ID!, $g: Bytes!) { createConversation(input: { deviceId: $deviceId, groupId: $g }) { id } }`,
      { g: b64(randomBytes(16)) },
    );
    expect(errorCodeOf(missing)).toBe('BAD_USER_INPUT');
  });

  it('lets a device leave: it stops at once, members hear it and one commits its removal', async () => {
    const { conversationId, members } = await buildGroup(app, 3);
    const [alice, bob, carol] = members as [Member, Member, Member];
    const aliceLive = await alice.device.subscribe();
    const leave = `mutation ($deviceId: ID!, $c: ID!) { leaveConversation(deviceId: $deviceId, conversationId: $c) }`;
    dataOf(await carol.device.gql(leave, { c: conversationId }));
    const heard = await aliceLive.waitFor((event) => event.__typename === 'LeaveEvent');
    expect(heard).toMatchObject({ conversationId, leavingDeviceId: carol.device.deviceId });
    expect(errorCodeOf(await carol.device.page(conversationId))).toBe('NOT_A_MEMBER');
    expect(
      errorCodeOf(await carol.device.send(conversationId, await carol.group.encrypt('bye'))),
    ).toBe('NOT_A_MEMBER');
    const view = dataOf(
      await alice.device.gql<{
        conversation: { members: { deviceId: string; leaving: boolean }[] };
      }>(
        `query ($deviceId: ID!, $c: ID!) { conversation(deviceId: $deviceId, conversationId: $c) { members { deviceId leaving } } }`,
        { c: conversationId },
      ),
    );
    expect(
      view.conversation.members.find((member) => member.deviceId === carol.device.deviceId)
        ?.leaving,
    ).toBe(true);
    // Any member commits the removal; the roster then matches the tree without Carol.
    dataOf(
      await bob.device.submit(
        conversationId,
        await bob.group.removeMembers([carol.device.identity]),
      ),
    );
    bob.group.confirmCommit();
    await alice.device.catchUp(alice.group, conversationId, alice.cursor);
    expect(alice.group.members().filter((identity) => identity !== undefined)).not.toContain(
      carol.device.identity,
    );
    await aliceLive.close();
  });
});
