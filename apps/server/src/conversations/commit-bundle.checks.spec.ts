import { randomBytes, randomUUID } from 'node:crypto';
import type { InspectedCommit } from '@parley/mls';
import { describe, expect, it } from 'vitest';
import {
  type CommitBundle,
  MlsMember,
  flipCommitSignature,
  flipConfirmationTag,
} from '@parley/mls-member';
import { DomainError } from '../common/domain.errors.js';
import {
  bundleDigest,
  checkCommitAgainstEpoch,
  checkCommitGroup,
  checkCommitShape,
  checkFirstCommit,
  checkGroupInfoTarget,
  checkNewGroupInfo,
  checkRoster,
  checkSender,
  checkWelcome,
  decodeBundle,
  StoredGroupInfos,
} from './commit-bundle.checks.js';

const MAX = 1 << 20;

/** `code/reason` of the DomainError a check throws, or `passed`. */
async function outcome(run: () => unknown): Promise<string> {
  try {
    await run();
    return 'passed';
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    const reason = error.details.reason;
    return typeof reason === 'string' ? `${error.code}/${reason}` : error.code;
  }
}

const member = () => MlsMember.create(`${randomUUID()}:8${randomUUID().slice(0, 15)}@parley.test`);

async function twoMembers() {
  const [alice, bob] = await Promise.all([member(), member()]);
  const group = await alice.createGroup(randomBytes(16));
  const genesis = await group.groupInfo();
  const add = await group.addMembers(await bob.keyPackages(1));
  group.confirmCommit();
  const bobs = await bob.joinFromWelcome(add.welcome ?? new Uint8Array());
  return { alice, bob, group, bobs, genesis, add };
}

const decode = (bundle: CommitBundle) => decodeBundle(bundle, MAX);

const commitOf = (over: Partial<InspectedCommit>): InspectedCommit => ({
  groupId: new Uint8Array(16),
  epoch: 3n,
  sender: { type: 'member', leafIndex: 0 },
  proposals: [],
  proposalRefs: [],
  pathLeaf: null,
  ...over,
});

describe('commit bundle checks', () => {
  it('checkCommitShape accepts member commits with Adds and Removes by value only', async () => {
    expect(
      await outcome(() => {
        checkCommitShape(commitOf({}));
      }),
    ).toBe('passed');
    expect(
      await outcome(() => {
        // External commits are left to external-commit.checks.ts.
        checkCommitShape(commitOf({ sender: { type: 'new_member_commit' } }));
      }),
    ).toBe('passed');
    expect(
      await outcome(() => {
        checkCommitShape(commitOf({ proposalRefs: [new Uint8Array(32)] }));
      }),
    ).toBe('INVALID_COMMIT/PROPOSAL_BY_REFERENCE');
    expect(
      await outcome(() => {
        checkCommitShape(commitOf({ proposals: [{ type: 'update' }] }));
      }),
    ).toBe('INVALID_COMMIT/UNSUPPORTED_PROPOSAL');
  });

  it('decodeBundle names the part that does not decode', async () => {
    const { group } = await twoMembers();
    const bundle = await group.update();
    expect(await outcome(() => decode(bundle))).toBe('passed');
    expect(await outcome(() => decode({ ...bundle, commit: bundle.commit.subarray(0, 40) }))).toBe(
      'INVALID_COMMIT/DECODE',
    );
    expect(await outcome(() => decode({ ...bundle, groupInfo: bundle.commit }))).toBe(
      'INVALID_GROUP_INFO/WRONG_WIRE_FORMAT',
    );
    expect(await outcome(() => decode({ ...bundle, welcome: bundle.groupInfo }))).toBe(
      'INVALID_WELCOME/WRONG_WIRE_FORMAT',
    );
  });

  it('checkCommitGroup, checkSender and checkGroupInfoTarget hold the bundle to this group, leaf and epoch', async () => {
    const { group, add } = await twoMembers();
    const decoded = await decode(await group.update());
    const commit = decoded.commit.inspected;
    expect(
      await outcome(() => {
        checkCommitGroup(commit, group.groupId);
      }),
    ).toBe('passed');
    expect(
      await outcome(() => {
        checkCommitGroup(commit, randomBytes(16));
      }),
    ).toBe('INVALID_COMMIT/WRONG_GROUP');
    expect(
      await outcome(() => {
        checkSender(commit, { deviceId: 'a', leafIndex: 0 });
      }),
    ).toBe('passed');
    expect(
      await outcome(() => {
        checkSender(commit, { deviceId: 'a', leafIndex: 1 });
      }),
    ).toBe('INVALID_COMMIT/WRONG_SENDER');
    expect(
      await outcome(() => {
        checkGroupInfoTarget(decoded.groupInfo, group.groupId, commit.epoch);
      }),
    ).toBe('passed');
    const stale = (await decode({ ...add, welcome: undefined })).groupInfo;
    expect(
      await outcome(() => {
        checkGroupInfoTarget(stale, group.groupId, commit.epoch);
      }),
    ).toBe('INVALID_GROUP_INFO/WRONG_EPOCH');
    expect(
      await outcome(() => {
        checkGroupInfoTarget(decoded.groupInfo, randomBytes(16), commit.epoch);
      }),
    ).toBe('INVALID_GROUP_INFO/WRONG_GROUP');
  });

  it('checkCommitAgainstEpoch refuses each forgery with INVALID_COMMIT and its reason', async () => {
    const { group, bobs, add } = await twoMembers();
    const previous = (await decode({ ...add, welcome: undefined })).groupInfo;
    const first = await group.update();
    group.discardCommit();
    const honest = await group.update();
    const cases: [string, CommitBundle][] = [
      ['passed', honest],
      ['INVALID_COMMIT/BAD_SIGNATURE', { ...honest, commit: flipCommitSignature(honest.commit) }],
      ['INVALID_COMMIT/TRANSCRIPT_MISMATCH', { ...first, groupInfo: honest.groupInfo }],
      [
        'INVALID_COMMIT/CONFIRMATION_MISMATCH',
        { ...honest, commit: flipConfirmationTag(honest.commit) },
      ],
      [
        'INVALID_COMMIT/WRONG_SIGNER',
        { ...honest, groupInfo: await bobs.resignGroupInfo(honest.groupInfo) },
      ],
      [
        'INVALID_COMMIT/LEAF_REWRITTEN',
        {
          ...honest,
          groupInfo: await group.resignGroupInfo(honest.groupInfo, (tree) => {
            const node = tree[2 * bobs.leafIndex];
            if (node?.nodeType !== 'leaf') throw new Error('no leaf for Bob');
            tree[2 * bobs.leafIndex] = {
              ...node,
              leaf: { ...node.leaf, signature: randomBytes(node.leaf.signature.length) },
            };
          }),
        },
      ],
    ];
    for (const [expected, bundle] of cases) {
      const decoded = await decode(bundle);
      expect(await outcome(() => checkCommitAgainstEpoch(decoded, previous)), expected).toBe(
        expected,
      );
    }
  });

  it('checkNewGroupInfo verifies the new GroupInfo itself, as INVALID_GROUP_INFO', async () => {
    const { group, bobs, add } = await twoMembers();
    const previous = (await decode({ ...add, welcome: undefined })).groupInfo;
    const honest = await group.update();
    const verified = await checkNewGroupInfo(await decode(honest), previous);
    expect(verified.leaves.map((leaf) => leaf.leafIndex)).toEqual([0, 1]);
    const badLeaf = await group.resignGroupInfo(honest.groupInfo, (tree) => {
      const node = tree[2 * bobs.leafIndex];
      if (node?.nodeType !== 'leaf') throw new Error('no leaf for Bob');
      tree[2 * bobs.leafIndex] = {
        ...node,
        leaf: { ...node.leaf, signature: randomBytes(node.leaf.signature.length) },
      };
    });
    expect(
      await outcome(() =>
        decode({ ...honest, groupInfo: badLeaf }).then((b) => checkNewGroupInfo(b, previous)),
      ),
    ).toBe('INVALID_GROUP_INFO/BAD_LEAF_SIGNATURE');
  });

  it('checkFirstCommit holds the first commit to the creator key when no GroupInfo was stored', async () => {
    const [alice, bob] = await Promise.all([member(), member()]);
    const group = await alice.createGroup(randomBytes(16));
    const add = await decode(await group.addMembers(await bob.keyPackages(1)));
    expect(await checkFirstCommit(add, alice.signaturePublicKey)).toBe(true);
    expect(await outcome(() => checkFirstCommit(add, bob.signaturePublicKey))).toBe(
      'INVALID_COMMIT/WRONG_SIGNER',
    );
  });

  it('checkRoster and checkWelcome compare the new tree and the Welcome with the proposals', async () => {
    const { group, add } = await twoMembers();
    const decoded = await decode(add);
    const verified = await checkNewGroupInfo(decoded, null);
    const deviceOf = (identity: Uint8Array) => Buffer.from(identity).toString('utf8');
    const [creator, joiner] = verified.leaves.map((leaf) => deviceOf(leaf.identity)) as [
      string,
      string,
    ];
    const roster = [{ deviceId: creator, leafIndex: 0 }];
    expect(checkRoster(roster, decoded.commit.inspected, verified, [joiner], deviceOf)).toEqual({
      added: [{ deviceId: joiner, leafIndex: 1 }],
      removed: [],
    });
    expect(
      await outcome(() => checkRoster(roster, decoded.commit.inspected, verified, [], deviceOf)),
    ).toBe('INVALID_GROUP_INFO/ROSTER_MISMATCH');
    expect(
      await outcome(() =>
        checkRoster(roster, decoded.commit.inspected, verified, [joiner], () => null),
      ),
    ).toBe('INVALID_GROUP_INFO/UNKNOWN_IDENTITY');

    const refs = decoded.welcomeRefs ?? [];
    expect(refs).toHaveLength(1);
    expect(
      await outcome(() => {
        checkWelcome(refs, refs);
      }),
    ).toBe('passed');
    expect(
      await outcome(() => {
        checkWelcome(null, refs);
      }),
    ).toBe('INVALID_WELCOME/MISSING');
    expect(
      await outcome(() => {
        checkWelcome(refs, []);
      }),
    ).toBe('INVALID_WELCOME/UNEXPECTED');
    expect(
      await outcome(() => {
        checkWelcome([randomBytes(32)], refs);
      }),
    ).toBe('INVALID_WELCOME/WRONG_RECIPIENTS');
    expect(group.epoch).toBe(1n);
  });

  it('bundleDigest tells bundles apart by every part, with and without a Welcome', () => {
    const parts = { commit: randomBytes(50), groupInfo: randomBytes(80) };
    const digest = bundleDigest(parts);
    expect(bundleDigest({ ...parts })).toEqual(digest);
    expect(bundleDigest({ ...parts, welcome: new Uint8Array() })).not.toEqual(digest);
    // Moving a byte from one part to the next changes the digest: parts are length-prefixed.
    expect(
      bundleDigest({
        commit: parts.commit.subarray(0, 49),
        groupInfo: Buffer.concat([parts.commit.subarray(49), parts.groupInfo]),
      }),
    ).not.toEqual(digest);
  });
});

describe('StoredGroupInfos', () => {
  it('decodes a stored GroupInfo once while its bytes stay the same, and never serves other bytes', async () => {
    const { group, genesis, add } = await twoMembers();
    const stored = new StoredGroupInfos();
    const id = randomUUID();
    const first = await stored.decode(id, Buffer.from(add.groupInfo));
    expect(await stored.decode(id, Buffer.from(add.groupInfo))).toBe(first);
    // The conversation moved on (here or on another instance): the new bytes are decoded.
    const update = await group.update();
    const next = await stored.decode(id, Buffer.from(update.groupInfo));
    expect(next).not.toBe(first);
    expect(next.epoch).toBe(first.epoch + 1n);
    // What a commit remembers is served only for exactly its bytes.
    const remembered = (await decode(update)).groupInfo;
    stored.remember(id, Buffer.from(update.groupInfo), remembered);
    expect(await stored.decode(id, Buffer.from(update.groupInfo))).toBe(remembered);
    expect((await stored.decode(id, Buffer.from(add.groupInfo))).epoch).toBe(first.epoch);
    // Over its budget, the least recently used go first.
    const small = new StoredGroupInfos(add.groupInfo.length + genesis.length);
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const kept = await small.decode(a, Buffer.from(genesis));
    await small.decode(b, Buffer.from(add.groupInfo));
    expect(await small.decode(a, Buffer.from(genesis))).toBe(kept);
    await small.decode(c, Buffer.from(genesis));
    expect(await small.decode(a, Buffer.from(genesis))).toBe(kept);
  });
});
