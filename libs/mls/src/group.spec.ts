import {
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPub,
  createGroupInfoWithExternalPubAndRatchetTree,
  createProposal,
  encodeMlsMessage,
  joinGroupExternal,
  type ClientState,
  type CreateCommitOptions,
  type GroupInfo,
  type Proposal,
  type Welcome,
} from 'ts-mls';
import { validateRatchetTree } from 'ts-mls/clientState.js';
import { createGroupInfoWithRatchetTree } from 'ts-mls/createCommit.js';
import { defaultAuthenticationService } from 'ts-mls/authenticationService.js';
import { defaultLifetimeConfig } from 'ts-mls/lifetimeConfig.js';
import { describe, expect, it } from 'vitest';

import {
  MlsError,
  inspectCommit,
  inspectMessage,
  inspectWelcome,
  validateKeyPackage,
  verifyGroupInfo,
  type MlsErrorReason,
} from './index.js';
import { makeKeyPackage, seededRandom, type ClientKeyPackage } from './spec-support.js';

const NOW_S = Math.floor(Date.now() / 1000);
const lifetime = { notBefore: NOW_S - 60, notAfter: NOW_S + 7 * 24 * 3600 };
const policy = {
  supportedCiphersuites: [1, 2, 3],
  maxLifetimeSeconds: 30 * 24 * 3600,
  now: new Date(),
  clockSkewSeconds: 60,
};

async function reasonOf(run: () => Promise<unknown>): Promise<MlsErrorReason | 'NO_ERROR'> {
  try {
    await run();
    return 'NO_ERROR';
  } catch (error) {
    if (error instanceof MlsError) return error.reason;
    throw error;
  }
}

function groupInfoMessage(groupInfo: GroupInfo): Uint8Array {
  return encodeMlsMessage({ version: 'mls10', wireformat: 'mls_group_info', groupInfo });
}

function welcomeMessage(welcome: Welcome): Uint8Array {
  return encodeMlsMessage({ version: 'mls10', wireformat: 'mls_welcome', welcome });
}

function add(member: ClientKeyPackage): Proposal {
  return { proposalType: 'add', add: { keyPackage: member.keyPackage } };
}

function remove(leafIndex: number): Proposal {
  return { proposalType: 'remove', remove: { removed: leafIndex } };
}

/** A group run by one ts-mls client; the others exist only as leaves, which is all a DS sees. */
class Group {
  private constructor(
    public state: ClientState,
    readonly owner: ClientKeyPackage,
  ) {}

  static async create(suite: number): Promise<Group> {
    const owner = await makeKeyPackage(suite, lifetime);
    const groupId = new TextEncoder().encode(`group-${String(Math.random())}`);
    const state = await createGroup(
      groupId,
      owner.keyPackage,
      owner.privatePackage,
      [],
      owner.impl,
    );
    return new Group(state, owner);
  }

  async commit(proposals: Proposal[], options: CreateCommitOptions = {}) {
    const result = await createCommit(
      { state: this.state, cipherSuite: this.owner.impl },
      {
        wireAsPublicMessage: true,
        ratchetTreeExtension: true,
        extraProposals: proposals,
        ...options,
      },
    );
    this.state = result.newState;
    return {
      commit: encodeMlsMessage(result.commit),
      welcome: result.welcome === undefined ? undefined : welcomeMessage(result.welcome),
    };
  }

  async groupInfo(): Promise<GroupInfo> {
    return createGroupInfoWithExternalPubAndRatchetTree(this.state, [], this.owner.impl);
  }
}

for (const suite of [1, 2, 3]) {
  describe(`a ts-mls group on ciphersuite ${suite}`, () => {
    it('adding a member: inspectCommit, inspectWelcome and verifyGroupInfo agree with the key package', async () => {
      const group = await Group.create(suite);
      const bob = await makeKeyPackage(suite, lifetime);
      const bobRef = (await validateKeyPackage(bob.bytes, policy)).ref;

      const { commit, welcome } = await group.commit([add(bob)]);

      const inspected = await inspectCommit(commit);
      expect(inspected.groupId).toEqual(new Uint8Array(group.state.groupContext.groupId));
      expect(inspected.epoch).toBe(0n);
      expect(inspected.sender).toEqual({ type: 'member', leafIndex: 0 });
      expect(inspected.proposalRefs).toEqual([]);
      expect(inspected.proposals).toEqual([
        {
          type: 'add',
          keyPackageRef: bobRef,
          ciphersuite: suite,
          identity: bob.identity,
          signatureKey: new Uint8Array(bob.keyPackage.leafNode.signaturePublicKey),
        },
      ]);
      // ts-mls sends add-only commits without a path.
      expect(inspected.pathLeaf).toBeNull();

      expect(inspectMessage(commit)).toEqual({
        wireFormat: 'public_message',
        groupId: inspected.groupId,
        epoch: 0n,
        contentType: 'commit',
        sender: { type: 'member', leafIndex: 0 },
      });

      if (welcome === undefined) throw new Error('adding a member yields a Welcome');
      expect(inspectWelcome(welcome)).toEqual({ ciphersuite: suite, keyPackageRefs: [bobRef] });
      expect(inspectMessage(welcome)).toEqual({ wireFormat: 'welcome', ciphersuite: suite });

      const groupInfo = groupInfoMessage(await group.groupInfo());
      const verified = await verifyGroupInfo(groupInfo, { verifyParentHashes: true });
      expect(verified).toEqual({
        groupId: inspected.groupId,
        epoch: 1n,
        ciphersuite: suite,
        signer: 0,
        leaves: [
          {
            leafIndex: 0,
            identity: group.owner.identity,
            signatureKey: new Uint8Array(group.owner.keyPackage.leafNode.signaturePublicKey),
          },
          {
            leafIndex: 1,
            identity: bob.identity,
            signatureKey: new Uint8Array(bob.keyPackage.leafNode.signaturePublicKey),
          },
        ],
        externalPub: true,
      });
      expect(inspectMessage(groupInfo)).toEqual({
        wireFormat: 'group_info',
        groupId: inspected.groupId,
        epoch: 1n,
        ciphersuite: suite,
      });
    });
  });
}

describe('inspectCommit', () => {
  it('reports Remove leaf indexes and the committer path leaf', async () => {
    const group = await Group.create(1);
    const bob = await makeKeyPackage(1, lifetime);
    const carol = await makeKeyPackage(1, lifetime);
    await group.commit([add(bob), add(carol)]);

    const { commit, welcome } = await group.commit([remove(1)]);
    const inspected = await inspectCommit(commit);
    expect(welcome).toBeUndefined();
    expect(inspected.epoch).toBe(1n);
    expect(inspected.proposals).toEqual([{ type: 'remove', leafIndex: 1 }]);
    // A Remove forces an UpdatePath, so the committer's fresh leaf is visible.
    expect(inspected.pathLeaf?.identity).toEqual(group.owner.identity);

    const roster = await verifyGroupInfo(groupInfoMessage(await group.groupInfo()));
    expect(roster.leaves.map((leaf) => leaf.leafIndex)).toEqual([0, 2]);
    expect(roster.leaves[1]?.identity).toEqual(carol.identity);
  });

  it('lists proposals committed by reference as ProposalRefs', async () => {
    const group = await Group.create(1);
    const bob = await makeKeyPackage(1, lifetime);
    await group.commit([add(bob)]);
    const proposal = await createProposal(group.state, true, remove(1), group.owner.impl);
    group.state = proposal.newState;
    const proposalBytes = encodeMlsMessage(proposal.message);
    expect(inspectMessage(proposalBytes)).toMatchObject({
      wireFormat: 'public_message',
      contentType: 'proposal',
      epoch: 1n,
    });
    expect(await reasonOf(() => inspectCommit(proposalBytes))).toBe('WRONG_CONTENT_TYPE');

    const { commit } = await group.commit([]);
    const inspected = await inspectCommit(commit);
    expect(inspected.proposals).toEqual([]);
    expect(inspected.proposalRefs).toHaveLength(1);
    expect(inspected.proposalRefs[0]).toHaveLength(32);
  });

  it('sees an external join as a new_member_commit whose path leaf is the joiner', async () => {
    const group = await Group.create(1);
    const joiner = await makeKeyPackage(1, lifetime);
    const groupInfo = await group.groupInfo();
    const { publicMessage } = await joinGroupExternal(
      groupInfo,
      joiner.keyPackage,
      joiner.privatePackage,
      false,
      joiner.impl,
    );
    const bytes = encodeMlsMessage({
      version: 'mls10',
      wireformat: 'mls_public_message',
      publicMessage,
    });
    const inspected = await inspectCommit(bytes);
    expect(inspected.sender).toEqual({ type: 'new_member_commit' });
    expect(inspected.epoch).toBe(0n);
    expect(inspected.proposals.map((p) => p.type)).toEqual(['external_init']);
    expect(inspected.pathLeaf).toEqual({
      identity: joiner.identity,
      signatureKey: new Uint8Array(joiner.keyPackage.leafNode.signaturePublicKey),
    });
  });

  it('refuses a commit sent as PrivateMessage with WRONG_WIRE_FORMAT', async () => {
    const group = await Group.create(1);
    const { commit } = await group.commit([], { wireAsPublicMessage: false });
    expect(inspectMessage(commit)).toMatchObject({
      wireFormat: 'private_message',
      contentType: 'commit',
      epoch: 0n,
    });
    expect(await reasonOf(() => inspectCommit(commit))).toBe('WRONG_WIRE_FORMAT');
  });

  it('inspects application messages without decrypting them', async () => {
    const group = await Group.create(1);
    const { privateMessage } = await createApplicationMessage(
      group.state,
      new TextEncoder().encode('hello'),
      group.owner.impl,
    );
    const bytes = encodeMlsMessage({
      version: 'mls10',
      wireformat: 'mls_private_message',
      privateMessage,
    });
    expect(inspectMessage(bytes)).toEqual({
      wireFormat: 'private_message',
      groupId: new Uint8Array(group.state.groupContext.groupId),
      epoch: 0n,
      contentType: 'application',
    });
  });
});

describe('verifyGroupInfo rejects', () => {
  async function twoMemberGroup() {
    const group = await Group.create(1);
    await group.commit([add(await makeKeyPackage(1, lifetime))]);
    return group;
  }

  it('a tampered signature with BAD_SIGNATURE', async () => {
    const group = await twoMemberGroup();
    const bytes = groupInfoMessage(await group.groupInfo());
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x01;
    expect(await reasonOf(() => verifyGroupInfo(bytes))).toBe('BAD_SIGNATURE');
  });

  it('a tampered tree with BAD_SIGNATURE (the tree is signed as an extension)', async () => {
    const group = await twoMemberGroup();
    const groupInfo = await group.groupInfo();
    const bytes = groupInfoMessage(groupInfo);
    const identity = Buffer.from(group.owner.identity);
    const at = Buffer.from(bytes).indexOf(identity);
    bytes[at] = (bytes[at] ?? 0) ^ 0x01;
    expect(await reasonOf(() => verifyGroupInfo(bytes))).toBe('BAD_SIGNATURE');
  });

  it('a validly signed GroupInfo whose tree is not the one of its group context with INVALID_TREE', async () => {
    const group = await Group.create(1);
    const staleTree = group.state.ratchetTree;
    await group.commit([add(await makeKeyPackage(1, lifetime))]);
    const { groupContext, confirmationTag } = group.state;
    const lying = await createGroupInfoWithRatchetTree(
      groupContext,
      confirmationTag,
      group.state,
      staleTree,
      [],
      group.owner.impl,
    );
    expect(await reasonOf(() => verifyGroupInfo(groupInfoMessage(lying)))).toBe('INVALID_TREE');
  });

  it('a GroupInfo without the ratchet_tree extension with MISSING_RATCHET_TREE', async () => {
    const group = await twoMemberGroup();
    const bare = await createGroupInfoWithExternalPub(group.state, [], group.owner.impl);
    expect(await reasonOf(() => verifyGroupInfo(groupInfoMessage(bare)))).toBe(
      'MISSING_RATCHET_TREE',
    );
  });

  it('another wire format with WRONG_WIRE_FORMAT', async () => {
    const group = await Group.create(1);
    const { commit } = await group.commit([]);
    expect(await reasonOf(() => verifyGroupInfo(commit))).toBe('WRONG_WIRE_FORMAT');
  });
});

describe('robustness on real group messages', () => {
  it('never lets anything but MlsError escape from mutated commits and GroupInfos', async () => {
    const group = await Group.create(2);
    const { commit } = await group.commit([add(await makeKeyPackage(2, lifetime))]);
    const groupInfo = groupInfoMessage(await group.groupInfo());
    const next = seededRandom(0xc0ffee);
    for (let round = 0; round < 300; round++) {
      for (const original of [commit, groupInfo]) {
        const bytes = original.slice();
        bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
        const outcomes = await Promise.allSettled([inspectCommit(bytes), verifyGroupInfo(bytes)]);
        for (const outcome of outcomes) {
          if (outcome.status === 'rejected') expect(outcome.reason).toBeInstanceOf(MlsError);
        }
      }
    }
  });
});

describe('verifyGroupInfo on unmerged leaves', () => {
  it('accepts ancestors with different unmerged_leaves, which ts-mls 1.6.4 itself rejects', async () => {
    const group = await Group.create(1);
    const newcomers = () => Promise.all([1, 2].map(() => makeKeyPackage(1, lifetime)));
    const members = await Promise.all([1, 2, 3, 4, 5].map(() => makeKeyPackage(1, lifetime)));
    await group.commit(members.map(add));
    // A Remove forces a path: the owner's ancestors 1, 3 and 7 become non-blank.
    await group.commit([remove(3), remove(5)]);
    // Add-only commits carry no path, so the added leaves 3 and 5 are unmerged at those ancestors.
    await group.commit((await newcomers()).map(add));

    const tree = group.state.ratchetTree;
    const unmerged = tree.map((node) =>
      node?.nodeType === 'parent' ? node.parent.unmergedLeaves : null,
    );
    expect(unmerged[3]).toEqual([3]);
    expect(unmerged[7]).toEqual([3, 5]);

    const groupInfo = await group.groupInfo();
    const verified = await verifyGroupInfo(groupInfoMessage(groupInfo), {
      verifyParentHashes: true,
    });
    expect(verified.leaves.map((leaf) => leaf.leafIndex)).toEqual([0, 1, 2, 3, 4, 5]);

    // RFC 9420 §7.8 asks that intermediate nodes *include* the leaf; ts-mls demands equal lists.
    const { groupContext } = group.state;
    const tsMlsVerdict = await validateRatchetTree(
      tree,
      groupContext,
      defaultLifetimeConfig,
      defaultAuthenticationService,
      groupContext.treeHash,
      group.owner.impl,
    );
    expect(tsMlsVerdict?.message).toMatch(/unmerged_leaves/);
    // So a ts-mls client cannot join this group from its GroupInfo.
    const joiner = await makeKeyPackage(1, lifetime);
    await expect(
      joinGroupExternal(groupInfo, joiner.keyPackage, joiner.privatePackage, false, joiner.impl),
    ).rejects.toThrow(/unmerged_leaves/);
  });
});
