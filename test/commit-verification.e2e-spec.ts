import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, dataOf } from './support/graphql.js';
import {
  type CommitBundle,
  MlsMember,
  flipCommitSignature,
  flipConfirmationTag,
} from '@parley/mls-member';
import { buildGroup, type GroupMember as Member, ParleyDevice } from './support/parley-client.js';
import {
  type GraphqlResponse,
  describeE2E,
  startTestApp,
  type TestApp,
  testDatabase,
} from './support/test-app.js';

const CONVERSATION = `query ($deviceId: ID!, $conversationId: ID!) {
  conversation(deviceId: $deviceId, conversationId: $conversationId) { epoch lastSeq }
}`;

const SUBMIT = `mutation ($deviceId: ID!, $conversationId: ID!, $commit: Bytes!, $groupInfo: Bytes!, $welcome: Bytes) {
  submitCommitBundle(input: { deviceId: $deviceId, conversationId: $conversationId, commit: $commit,
                              groupInfo: $groupInfo, welcome: $welcome }) {
    seq epoch addedDeviceIds removedDeviceIds
  }
}`;

interface CommitResult {
  seq: number;
  epoch: number;
  addedDeviceIds: string[];
  removedDeviceIds: string[];
}

/** Submits a bundle and returns the whole CommitResult (or the errors). */
function submit(
  device: ParleyDevice,
  conversationId: string,
  bundle: { commit: Uint8Array; groupInfo: Uint8Array; welcome?: Uint8Array | undefined },
): Promise<GraphqlResponse<{ submitCommitBundle: CommitResult }>> {
  return device.gql(SUBMIT, {
    conversationId,
    commit: b64(bundle.commit),
    groupInfo: b64(bundle.groupInfo),
    welcome: bundle.welcome === undefined ? null : b64(bundle.welcome),
  });
}

function refusal(response: GraphqlResponse<unknown>): string {
  const extensions = response.errors?.[0]?.extensions;
  const code = extensions?.code;
  const reason = extensions?.reason;
  return `${typeof code === 'string' ? code : '?'}/${typeof reason === 'string' ? reason : '-'}`;
}

async function view(member: Member, conversationId: string) {
  return dataOf(
    await member.device.gql<{ conversation: { epoch: number; lastSeq: number } }>(CONVERSATION, {
      conversationId,
    }),
  ).conversation;
}

describeE2E('commit verification', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('refuses each forged commit with its reason, stores nothing, and the group goes on', async () => {
    const { conversationId, members } = await buildGroup(app, 3);
    const [alice, bob, carol] = members as [Member, Member, Member];
    const before = await view(alice, conversationId);

    // Two honest commits of Alice's for the same epoch; only the second is kept pending.
    const first = await alice.group.update();
    alice.group.discardCommit();
    const honest = await alice.group.update();
    const otherKey = await alice.device.mls.newSignatureKeyPair();
    const bobsNode = 2 * bob.group.leafIndex;
    const forgeries: [string, CommitBundle][] = [
      ['INVALID_COMMIT/BAD_SIGNATURE', { ...honest, commit: flipCommitSignature(honest.commit) }],
      [
        'INVALID_COMMIT/BAD_SIGNATURE',
        { ...honest, commit: await alice.group.resignCommit(honest.commit, otherKey.signKey) },
      ],
      ['INVALID_COMMIT/TRANSCRIPT_MISMATCH', { ...first, groupInfo: honest.groupInfo }],
      [
        'INVALID_COMMIT/CONFIRMATION_MISMATCH',
        { ...honest, commit: flipConfirmationTag(honest.commit) },
      ],
      [
        'INVALID_COMMIT/LEAF_REWRITTEN',
        {
          ...honest,
          groupInfo: await alice.group.resignGroupInfo(honest.groupInfo, (tree) => {
            const node = tree[bobsNode];
            if (node?.nodeType !== 'leaf') throw new Error('no leaf for Bob');
            const key = Uint8Array.from(node.leaf.hpkePublicKey);
            key[0] = (key[0] ?? 0) ^ 0x01;
            tree[bobsNode] = { ...node, leaf: { ...node.leaf, hpkePublicKey: key } };
          }),
        },
      ],
      [
        'INVALID_COMMIT/WRONG_SIGNER',
        { ...honest, groupInfo: await bob.group.resignGroupInfo(honest.groupInfo) },
      ],
    ];
    for (const [expected, bundle] of forgeries) {
      expect(refusal(await submit(alice.device, conversationId, bundle)), expected).toBe(expected);
    }
    expect(await view(alice, conversationId)).toEqual(before);

    // The honest commit goes through, every member follows it, and they still talk.
    dataOf(await submit(alice.device, conversationId, honest));
    alice.group.confirmCommit();
    for (const member of [bob, carol]) {
      const { cursor } = await member.device.catchUp(member.group, conversationId, member.cursor);
      member.cursor = cursor;
      expect(member.group.epoch).toBe(alice.group.epoch);
    }
    await carol.device.say(carol.group, conversationId, 'still one group');
    expect((await bob.device.catchUp(bob.group, conversationId, bob.cursor)).texts).toEqual([
      'still one group',
    ]);
  });

  it('refuses forged added leaves: a key package Parley never handed out, or a tree whose added leaf is not the claimed one', async () => {
    const { conversationId, members } = await buildGroup(app, 2);
    const [alice] = members as [Member, Member];
    const dave = await ParleyDevice.create(app);
    await dave.uploadKeyPackages(1);
    const before = await view(alice, conversationId);
    // Added leaves are trusted unverified only as the leaf nodes of key packages Parley validated
    // and handed out; one it never saw (ts-mls refuses to add one with a broken leaf signature,
    // a hostile client would not) is refused whatever its leaf holds.
    const [unseen] = await dave.mls.keyPackages(1);
    const unvalidated = await alice.group.addMembers([unseen ?? new Uint8Array()]);
    alice.group.discardCommit();
    const honest = await alice.group.addMembers(await alice.device.claim([dave.userId]));
    // The claimed key package in the Add, but in the tree a leaf with another signature.
    const forgedLeaf = await alice.group.resignGroupInfo(honest.groupInfo, (tree) => {
      const index = tree.findIndex(
        (node) =>
          node?.nodeType === 'leaf' &&
          node.leaf.credential.credentialType === 'basic' &&
          new TextDecoder().decode(node.leaf.credential.identity) === dave.mls.identity,
      );
      const node = tree[index];
      if (node?.nodeType !== 'leaf') throw new Error('no leaf for Dave');
      const signature = Uint8Array.from(node.leaf.signature);
      signature[0] = (signature[0] ?? 0) ^ 0x01;
      tree[index] = { ...node, leaf: { ...node.leaf, signature } };
    });
    expect(refusal(await submit(alice.device, conversationId, unvalidated))).toBe(
      'INVALID_COMMIT/UNCLAIMED_KEY_PACKAGE',
    );
    expect(
      refusal(await submit(alice.device, conversationId, { ...honest, groupInfo: forgedLeaf })),
    ).toBe('INVALID_COMMIT/LEAF_REWRITTEN');
    expect(await view(alice, conversationId)).toEqual(before);
    const added = dataOf(await submit(alice.device, conversationId, honest)).submitCommitBundle;
    expect(added.addedDeviceIds).toEqual([dave.deviceId]);
  });

  it('checks the first commit of a conversation registered without a GroupInfo against the creator key', async () => {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    // Alice's first upload binds her signature key to her device.
    await Promise.all([alice.uploadKeyPackages(1), bob.uploadKeyPackages(2)]);
    const { conversationId, group } = await alice.createConversation({ withGroupInfo: false });
    const [bobsPackage] = await alice.claim([bob.userId]);
    if (bobsPackage === undefined) throw new Error('no key package');
    const honest = await group.addMembers([bobsPackage]);

    // The same group id and identity, but a key that is not the one Alice's device holds.
    const impostor = await MlsMember.create(alice.identity);
    const impostorGroup = await impostor.createGroup(group.groupId);
    const [anotherPackage] = await alice.claim([bob.userId]);
    if (anotherPackage === undefined) throw new Error('no key package');
    const impostorBundle = await impostorGroup.addMembers([anotherPackage]);

    const forgeries: [string, CommitBundle][] = [
      ['INVALID_COMMIT/BAD_SIGNATURE', { ...honest, commit: flipCommitSignature(honest.commit) }],
      [
        'INVALID_COMMIT/CONFIRMATION_MISMATCH',
        { ...honest, commit: flipConfirmationTag(honest.commit) },
      ],
      ['INVALID_COMMIT/WRONG_SIGNER', impostorBundle],
    ];
    for (const [expected, bundle] of forgeries) {
      expect(refusal(await submit(alice, conversationId, bundle)), expected).toBe(expected);
    }
    const accepted = dataOf(await submit(alice, conversationId, honest)).submitCommitBundle;
    group.confirmCommit();
    expect(accepted.epoch).toBe(1);
    expect(accepted.addedDeviceIds).toEqual([bob.deviceId]);
    const joined = await bob.joinFromWelcome();
    expect(joined.conversationId).toBe(conversationId);
    await alice.say(group, conversationId, 'hello Bob');
    expect((await bob.catchUp(joined.group, conversationId, joined.commitSeq)).texts).toEqual([
      'hello Bob',
    ]);
  });

  it('answers a replayed winning bundle with its original result, after the fact and at once', async () => {
    const { conversationId, members } = await buildGroup(app, 2);
    const [alice, bob] = members as [Member, Member];
    const carol = await ParleyDevice.create(app);
    await carol.uploadKeyPackages(1);

    const adding = await alice.group.addMembers(await alice.device.claim([carol.userId]));
    const added = dataOf(await submit(alice.device, conversationId, adding)).submitCommitBundle;
    expect(added.addedDeviceIds).toEqual([carol.deviceId]);
    // The response was lost, say: the same bundle again gets the same answer, not STALE_EPOCH.
    expect(dataOf(await submit(alice.device, conversationId, adding)).submitCommitBundle).toEqual(
      added,
    );
    alice.group.confirmCommit();
    // Another device sending those bytes, or a different bundle for that epoch, is just stale.
    expect(refusal(await submit(bob.device, conversationId, adding))).toBe('STALE_EPOCH/-');
    expect(
      refusal(await submit(alice.device, conversationId, { ...adding, welcome: undefined })),
    ).toBe('STALE_EPOCH/-');
    bob.cursor = (await bob.device.catchUp(bob.group, conversationId, bob.cursor)).cursor;

    const removing = await alice.group.removeMembers([carol.identity]);
    const removed = dataOf(await submit(alice.device, conversationId, removing)).submitCommitBundle;
    expect(removed.removedDeviceIds).toEqual([carol.deviceId]);
    expect(dataOf(await submit(alice.device, conversationId, removing)).submitCommitBundle).toEqual(
      removed,
    );
    alice.group.confirmCommit();

    // Two identical submissions at once: one wins, the other gets the same answer.
    const update = await alice.group.update();
    const both = await Promise.all([
      submit(alice.device, conversationId, update),
      submit(alice.device, conversationId, update),
    ]);
    const [one, two] = both.map((response) => dataOf(response).submitCommitBundle);
    expect(one).toEqual(two);
    alice.group.confirmCommit();
    const commits = (await alice.device.entries(conversationId)).filter((e) => e.kind === 'COMMIT');
    expect(commits.map((entry) => entry.seq)).toEqual([1, added.seq, removed.seq, one?.seq]);
    expect((await view(alice, conversationId)).epoch).toBe(4);
    await bob.device.catchUp(bob.group, conversationId, bob.cursor);
    expect(bob.group.epoch).toBe(alice.group.epoch);
  });

  describe.skipIf(testDatabase !== 'postgres')('on two instances', () => {
    let other: TestApp;
    beforeAll(async () => {
      other = await startTestApp({
        database: app.config.database,
        tokenSecret: app.config.tokenSecret,
      });
    });
    afterAll(async () => {
      await other.close();
    });

    it('answers the bundle replayed on the other instance, also when both race', async () => {
      const { conversationId, members } = await buildGroup(app, 2);
      const [alice] = members as [Member];
      const update = await alice.group.update();
      const won = dataOf(await submit(alice.device, conversationId, update)).submitCommitBundle;
      expect(
        dataOf(await submit(alice.device.via(other), conversationId, update)).submitCommitBundle,
      ).toEqual(won);
      alice.group.confirmCommit();
      const next = await alice.group.update();
      const raced = await Promise.all([
        submit(alice.device, conversationId, next),
        submit(alice.device.via(other), conversationId, next),
      ]);
      const [one, two] = raced.map((response) => dataOf(response).submitCommitBundle);
      expect(one).toEqual(two);
      expect(one?.epoch).toBe(won.epoch + 1);
    });
  });
});
