import { randomUUID } from 'node:crypto';
import type { RatchetTree } from 'ts-mls';
import { describe, expect, it } from 'vitest';

// The test-side ts-mls client of the end-to-end suites: real clients, and the forgeries a hostile
// member could send, made independently of the code under test.
import {
  MlsMember,
  flipCommitSignature,
  flipConfirmationTag,
  type CommitBundle,
  type MlsGroup,
} from '@parley/mls-member';
import {
  MlsError,
  decodeCommit,
  decodeGroupInfo,
  knownLeaves,
  verifyCommitSignature,
  verifyConfirmationTag,
  verifyFirstCommitSignature,
  verifyGroupInfoMessage,
  verifyGroupInfoSigner,
  verifyLeafChanges,
  verifyTranscript,
  type KnownLeaf,
  type MlsErrorReason,
} from './index.js';

async function reasonOf(run: () => unknown): Promise<MlsErrorReason | 'NO_ERROR'> {
  try {
    await run();
    return 'NO_ERROR';
  } catch (error) {
    if (error instanceof MlsError) return error.reason;
    throw error;
  }
}

const member = () => MlsMember.create(`${randomUUID()}:8${randomUUID().slice(0, 15)}@example.com`);

/**
 * Every check the server runs on a bundle for epoch E, given the stored GroupInfo of E — verified
 * as it was when stored, and the new tree decoded against it, as the server decodes it.
 */
async function verifyAll(previousBytes: Uint8Array, bundle: CommitBundle): Promise<void> {
  const commit = await decodeCommit(bundle.commit);
  const previous = await decodeGroupInfo(previousBytes);
  await verifyGroupInfoMessage(previous);
  const next = await decodeGroupInfo(bundle.groupInfo, { previous });
  await verifyCommitSignature(commit, previous);
  await verifyTranscript(commit, previous, next);
  verifyGroupInfoSigner(commit, next);
  verifyLeafChanges(commit, previous, next);
  await verifyGroupInfoMessage(next, {
    knownLeaf: knownLeaves(commit, previous, { addedKeyPackagesValidated: true }),
  });
}

/** Alice's group with Bob and Carol joined; `stored` is the GroupInfo of the current epoch. */
async function threeMembers() {
  const [alice, bob, carol] = await Promise.all([member(), member(), member()]);
  const group = await alice.createGroup(crypto.getRandomValues(new Uint8Array(16)));
  const genesis = await group.groupInfo();
  const keyPackages = [...(await bob.keyPackages(1)), ...(await carol.keyPackages(1))];
  const add = await group.addMembers(keyPackages);
  await verifyAll(genesis, add);
  group.confirmCommit();
  const bobs = await bob.joinFromWelcome(add.welcome ?? new Uint8Array());
  const carols = await carol.joinFromWelcome(add.welcome ?? new Uint8Array());
  return { alice: group, bob: bobs, carol: carols, stored: add.groupInfo, genesis, add };
}

async function follow(group: MlsGroup, bundle: CommitBundle): Promise<void> {
  await group.processMessage(bundle.commit);
}

describe('commit verification against the stored GroupInfo of the epoch', () => {
  it('accepts honest adds, updates and removes, epoch after epoch, from any member', async () => {
    const { alice, bob, carol, stored } = await threeMembers();
    const update = await bob.update();
    await verifyAll(stored, update);
    bob.confirmCommit();
    await follow(alice, update);
    await follow(carol, update);
    const removal = await alice.removeMembers([carol.member.identity]);
    await verifyAll(update.groupInfo, removal);
    alice.confirmCommit();
    await follow(bob, removal);
    const again = await bob.update();
    await verifyAll(removal.groupInfo, again);
  });

  it('refuses a flipped signature byte and a commit re-signed by another key with BAD_SIGNATURE', async () => {
    const { alice, stored } = await threeMembers();
    const honest = await alice.update();
    const previous = await decodeGroupInfo(stored);
    const flipped = await decodeCommit(flipCommitSignature(honest.commit));
    expect(await reasonOf(() => verifyCommitSignature(flipped, previous))).toBe('BAD_SIGNATURE');
    const otherKey = await alice.member.newSignatureKeyPair();
    const resigned = await decodeCommit(await alice.resignCommit(honest.commit, otherKey.signKey));
    expect(await reasonOf(() => verifyCommitSignature(resigned, previous))).toBe('BAD_SIGNATURE');
    // The same commit checked against another epoch's GroupInfo (another group context) fails too.
    const genesisOfOther = await (
      await (await member()).createGroup(new Uint8Array(16))
    ).groupInfo();
    expect(
      await reasonOf(async () =>
        verifyCommitSignature(
          await decodeCommit(honest.commit),
          await decodeGroupInfo(genesisOfOther),
        ),
      ),
    ).toBe('BAD_SIGNATURE');
    await verifyAll(stored, honest);
  });

  it('refuses a GroupInfo of another commit of the same epoch with TRANSCRIPT_MISMATCH', async () => {
    const { alice, stored } = await threeMembers();
    const first = await alice.update();
    alice.discardCommit();
    const second = await alice.update();
    const commit = await decodeCommit(first.commit);
    const previous = await decodeGroupInfo(stored);
    const other = await decodeGroupInfo(second.groupInfo);
    await verifyCommitSignature(commit, previous);
    await verifyGroupInfoMessage(other);
    expect(await reasonOf(() => verifyTranscript(commit, previous, other))).toBe(
      'TRANSCRIPT_MISMATCH',
    );
    await verifyAll(stored, second);
  });

  it('refuses a flipped confirmation tag with CONFIRMATION_MISMATCH (the signature does not cover it)', async () => {
    const { alice, stored } = await threeMembers();
    const honest = await alice.update();
    const commit = await decodeCommit(flipConfirmationTag(honest.commit));
    const previous = await decodeGroupInfo(stored);
    const next = await decodeGroupInfo(honest.groupInfo);
    await verifyCommitSignature(commit, previous);
    expect(await reasonOf(() => verifyTranscript(commit, previous, next))).toBe(
      'CONFIRMATION_MISMATCH',
    );
    expect(
      await reasonOf(() => {
        verifyConfirmationTag(commit, next);
      }),
    ).toBe('CONFIRMATION_MISMATCH');
  });

  it("refuses a GroupInfo whose tree rewrites another member's leaf with LEAF_REWRITTEN", async () => {
    const { alice, bob, stored } = await threeMembers();
    const honest = await alice.update();
    const bobsNode = 2 * bob.leafIndex;
    const forged = await alice.resignGroupInfo(honest.groupInfo, (tree) => {
      const node = tree[bobsNode];
      if (node?.nodeType !== 'leaf') throw new Error('no leaf for Bob');
      const key = Uint8Array.from(node.leaf.hpkePublicKey);
      key[0] = (key[0] ?? 0) ^ 0x01;
      tree[bobsNode] = { ...node, leaf: { ...node.leaf, hpkePublicKey: key } };
    });
    const commit = await decodeCommit(honest.commit);
    const previous = await decodeGroupInfo(stored);
    const next = await decodeGroupInfo(forged);
    // The forgery is otherwise consistent: signed by the committer, same transcript.
    await verifyCommitSignature(commit, previous);
    await verifyTranscript(commit, previous, next);
    verifyGroupInfoSigner(commit, next);
    expect(
      await reasonOf(() => {
        verifyLeafChanges(commit, previous, next);
      }),
    ).toBe('LEAF_REWRITTEN');
    // Even skipping known leaves, the rewritten one is not known, so its signature is checked.
    expect(
      await reasonOf(() =>
        verifyGroupInfoMessage(next, {
          knownLeaf: knownLeaves(commit, previous, { addedKeyPackagesValidated: true }),
        }),
      ),
    ).toBe('BAD_LEAF_SIGNATURE');
    // Replacing the committer's own path leaf is caught too.
    const ownNode = 2 * alice.leafIndex;
    const ownForged = await alice.resignGroupInfo(honest.groupInfo, (tree) => {
      const node = tree[ownNode];
      if (node?.nodeType !== 'leaf') throw new Error('no leaf for Alice');
      tree[ownNode] = { ...node, leaf: { ...node.leaf, signature: node.leaf.signature.slice(1) } };
    });
    expect(
      await reasonOf(async () => {
        verifyLeafChanges(commit, previous, await decodeGroupInfo(ownForged));
      }),
    ).toBe('LEAF_REWRITTEN');
  });

  it('catches a forged leaf that only trusting known leaves would miss: a re-signed existing leaf, a forged added one', async () => {
    const { alice, bob, stored } = await threeMembers();
    // Re-signs the GroupInfo (tree hash recomputed) with one bit of `identity`'s leaf signature flipped.
    const flipSignature = (identity: string) => (tree: RatchetTree) => {
      const index = tree.findIndex(
        (node) =>
          node?.nodeType === 'leaf' &&
          node.leaf.credential.credentialType === 'basic' &&
          new TextDecoder().decode(node.leaf.credential.identity) === identity,
      );
      const node = tree[index];
      if (node?.nodeType !== 'leaf') throw new Error(`no leaf of ${identity}`);
      const signature = Uint8Array.from(node.leaf.signature);
      signature[0] = (signature[0] ?? 0) ^ 0x01;
      tree[index] = { ...node, leaf: { ...node.leaf, signature } };
    };
    const previous = await decodeGroupInfo(stored);
    // Verified as when it was stored: its nodes and their tree hashes are what the forgeries below
    // are decoded against, and each forged leaf is decoded and verified afresh all the same.
    await verifyGroupInfoMessage(previous);
    // Bob's leaf with nothing changed but its signature: not byte-identical, so verified, and caught.
    const update = await alice.update();
    alice.discardCommit();
    const updateCommit = await decodeCommit(update.commit);
    const forgedKept = await decodeGroupInfo(
      await alice.resignGroupInfo(update.groupInfo, flipSignature(bob.member.identity)),
      { previous },
    );
    expect(
      await reasonOf(() => {
        verifyLeafChanges(updateCommit, previous, forgedKept);
      }),
    ).toBe('LEAF_REWRITTEN');
    expect(
      await reasonOf(() =>
        verifyGroupInfoMessage(forgedKept, {
          knownLeaf: knownLeaves(updateCommit, previous, { addedKeyPackagesValidated: true }),
        }),
      ),
    ).toBe('BAD_LEAF_SIGNATURE');
    // The added member's leaf with another signature than its key package's: trusted only when
    // byte-identical to the Add's leaf node, so this one is verified, and caught.
    const dave = await member();
    const add = await alice.addMembers(await dave.keyPackages(1));
    const addCommit = await decodeCommit(add.commit);
    const forgedAdd = await decodeGroupInfo(
      await alice.resignGroupInfo(add.groupInfo, flipSignature(dave.identity)),
      { previous },
    );
    expect(
      await reasonOf(() => {
        verifyLeafChanges(addCommit, previous, forgedAdd);
      }),
    ).toBe('LEAF_REWRITTEN');
    expect(
      await reasonOf(() =>
        verifyGroupInfoMessage(forgedAdd, {
          knownLeaf: knownLeaves(addCommit, previous, { addedKeyPackagesValidated: true }),
        }),
      ),
    ).toBe('BAD_LEAF_SIGNATURE');
    // The honest bundles pass the same checks.
    await verifyAll(stored, add);
    await verifyAll(stored, update);
  });

  it('refuses a GroupInfo signed by a member other than the committer with WRONG_SIGNER', async () => {
    const { alice, bob, stored } = await threeMembers();
    const honest = await alice.update();
    // Bob signs it validly, as himself: the GroupInfo verifies, but Bob did not commit.
    const bobSigned = await decodeGroupInfo(await bob.resignGroupInfo(honest.groupInfo));
    await verifyGroupInfoMessage(bobSigned);
    const commit = await decodeCommit(honest.commit);
    await verifyTranscript(commit, await decodeGroupInfo(stored), bobSigned);
    expect(
      await reasonOf(() => {
        verifyGroupInfoSigner(commit, bobSigned);
      }),
    ).toBe('WRONG_SIGNER');
  });

  it('verifies the first commit of a group with no stored GroupInfo against the creator key', async () => {
    const [alice, bob] = await Promise.all([member(), member()]);
    const group = await alice.createGroup(crypto.getRandomValues(new Uint8Array(16)));
    const add = await group.addMembers(await bob.keyPackages(1));
    const commit = await decodeCommit(add.commit);
    const next = await decodeGroupInfo(add.groupInfo);
    expect(commit.inspected.pathLeaf).toBeNull();
    expect(await verifyFirstCommitSignature(commit, next, alice.signaturePublicKey)).toBe(true);
    verifyConfirmationTag(commit, next);
    verifyLeafChanges(commit, null, next);
    expect(
      await reasonOf(() => verifyFirstCommitSignature(commit, next, bob.signaturePublicKey)),
    ).toBe('WRONG_SIGNER');
    const flipped = await decodeCommit(flipCommitSignature(add.commit));
    expect(
      await reasonOf(() => verifyFirstCommitSignature(flipped, next, alice.signaturePublicKey)),
    ).toBe('BAD_SIGNATURE');
    // An update as the first commit replaces the creator's leaf: the epoch-0 group context
    // cannot be rebuilt, so the signature is reported unverified, not passed.
    group.discardCommit();
    const update = await group.update();
    expect(
      await verifyFirstCommitSignature(
        await decodeCommit(update.commit),
        await decodeGroupInfo(update.groupInfo),
        alice.signaturePublicKey,
      ),
    ).toBe(false);
  });

  it('skips the signatures of kept and validated added leaves only', async () => {
    const { alice, stored, genesis, add } = await threeMembers();
    const update = await alice.update();
    const commit = await decodeCommit(update.commit);
    const previous = await decodeGroupInfo(stored);
    const next = await decodeGroupInfo(update.groupInfo);
    const checked: number[] = [];
    const known = knownLeaves(commit, previous, { addedKeyPackagesValidated: true });
    const spy: KnownLeaf = (leafIndex, leaf) => {
      const skip = known(leafIndex, leaf);
      if (!skip) checked.push(leafIndex);
      return skip;
    };
    await verifyGroupInfoMessage(next, { knownLeaf: spy });
    // Only the committer's new path leaf is verified again; Bob's and Carol's are unchanged.
    expect(checked).toEqual([alice.leafIndex]);

    const addCommit = await decodeCommit(add.commit);
    const genesisInfo = await decodeGroupInfo(genesis);
    const verifiedAdds: number[] = [];
    const trusting = knownLeaves(addCommit, genesisInfo, { addedKeyPackagesValidated: true });
    await verifyGroupInfoMessage(await decodeGroupInfo(add.groupInfo), {
      knownLeaf: (leafIndex, leaf) => trusting(leafIndex, leaf) || !verifiedAdds.push(leafIndex),
    });
    expect(verifiedAdds).toEqual([]);
    const wary: number[] = [];
    const untrusting = knownLeaves(addCommit, genesisInfo, { addedKeyPackagesValidated: false });
    await verifyGroupInfoMessage(await decodeGroupInfo(add.groupInfo), {
      knownLeaf: (leafIndex, leaf) => untrusting(leafIndex, leaf) || !wary.push(leafIndex),
    });
    expect(wary).toEqual([1, 2]);
  });
});
