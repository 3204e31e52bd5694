import { createHash } from 'node:crypto';
import {
  type CommitMessage,
  type GroupInfoMessage,
  type InspectedCommit,
  type VerifiedGroupInfo,
  decodeCommit,
  decodeGroupInfo,
  inspectWelcome,
  knownLeaves,
  verifyCommitSignature,
  verifyConfirmationTag,
  verifyFirstCommitSignature,
  verifyGroupInfoMessage,
  verifyGroupInfoSigner,
  verifyLeafChanges,
  verifyTranscript,
} from '@parley/mls';
import { toHex } from '@parley/protocol';
import { mlsCheck } from '../common/mls-check.js';
import { invalidCommit, invalidGroupInfo, invalidWelcome } from './conversations.errors.js';
import { type RosterChange, RosterMismatch, rosterChange, type Seat } from './roster.js';

/**
 * The named checks of a commit bundle (commit for epoch E, GroupInfo of E+1, Welcome). Those that
 * need only bytes and the stored GroupInfo of E run before the conversation row is locked;
 * ConversationsService.submitCommitBundle orchestrates them and the checks against stored rows.
 */

/** The parts of a commit bundle as they arrive. */
export interface BundleBytes {
  commit: Uint8Array;
  groupInfo: Uint8Array;
  welcome?: Uint8Array | null;
}

/** A commit bundle decoded strictly; nothing in it is verified yet. */
export interface DecodedBundle {
  commit: CommitMessage;
  groupInfo: GroupInfoMessage;
  /** KeyPackageRefs the Welcome is encrypted to; null without a Welcome. */
  welcomeRefs: Uint8Array[] | null;
}

/** Only member commits with Add and Remove proposals by value are accepted. */
export function checkCommitShape(commit: InspectedCommit): void {
  // External commits have their own shape, checked in external-commit.checks.ts.
  if (commit.sender.type === 'new_member_commit') return;
  if (commit.proposalRefs.length > 0) {
    // Standalone proposals are not stored yet, so none can be committed by reference.
    throw invalidCommit('PROPOSAL_BY_REFERENCE', 'Commit proposals by value');
  }
  // An Update by value could only be the committer's own, which RFC 9420 §12.4 forbids (its path
  // updates its leaf); GroupContextExtensions would change the context the checks rely on.
  const unsupported = commit.proposals.find(
    (proposal) => proposal.type !== 'add' && proposal.type !== 'remove',
  );
  if (unsupported !== undefined) {
    throw invalidCommit(
      'UNSUPPORTED_PROPOSAL',
      `Proposals of type ${unsupported.type} are not accepted`,
    );
  }
}

/**
 * Decodes the commit (and checks its shape), the GroupInfo and the Welcome. `previous`, the
 * stored GroupInfo of the conversation's epoch, spares decoding the tree nodes the new GroupInfo
 * repeats byte for byte (the decoded bundle is the same with or without it).
 */
export async function decodeBundle(
  bundle: BundleBytes,
  maxBytes: number,
  previous: GroupInfoMessage | null = null,
): Promise<DecodedBundle> {
  const commit = await mlsCheck(
    () => decodeCommit(bundle.commit, { maxBytes }),
    (error) => invalidCommit(error.reason, `The commit is invalid: ${error.message}`),
  );
  checkCommitShape(commit.inspected);
  const groupInfo = await mlsCheck(
    () => decodeGroupInfo(bundle.groupInfo, { maxBytes, previous }),
    (error) => invalidGroupInfo(error.reason, `The GroupInfo is invalid: ${error.message}`),
  );
  const welcome = bundle.welcome;
  const welcomeRefs =
    welcome == null
      ? null
      : await mlsCheck(
          () => inspectWelcome(welcome, { maxBytes }).keyPackageRefs,
          (error) => invalidWelcome(error.reason, `The Welcome is invalid: ${error.message}`),
        );
  return { commit, groupInfo, welcomeRefs };
}

/** The commit is for this conversation's group. */
export function checkCommitGroup(commit: InspectedCommit, groupId: Uint8Array): void {
  if (!Buffer.from(commit.groupId).equals(groupId)) {
    throw invalidCommit('WRONG_GROUP', 'The commit is for another group');
  }
}

/** The commit's sender is the submitting device's own leaf. */
export function checkSender(commit: InspectedCommit, seat: Seat): void {
  const { sender } = commit;
  if (sender.type !== 'member' || sender.leafIndex !== seat.leafIndex) {
    throw invalidCommit('WRONG_SENDER', "The commit's sender is not this device's leaf");
  }
}

/** The GroupInfo is for this group, at the epoch the commit leads to. */
export function checkGroupInfoTarget(
  groupInfo: GroupInfoMessage,
  groupId: Uint8Array,
  commitEpoch: bigint,
): void {
  if (!Buffer.from(groupInfo.groupId).equals(groupId)) {
    throw invalidGroupInfo('WRONG_GROUP', 'The GroupInfo is for another group');
  }
  if (groupInfo.epoch !== commitEpoch + 1n) {
    throw invalidGroupInfo('WRONG_EPOCH', `The GroupInfo must be for epoch ${commitEpoch + 1n}`);
  }
}

const commitRefused = (error: { reason: string; message: string }) =>
  invalidCommit(error.reason, `The commit does not verify: ${error.message}`);

/**
 * The commit against the stored GroupInfo of its epoch: its FramedContent signature by the
 * sender's leaf in the stored tree, the transcript chain and confirmation tag into the new
 * GroupInfo, the new GroupInfo signed by the committer, and no leaf changed that the commit does
 * not change.
 */
export async function checkCommitAgainstEpoch(
  bundle: DecodedBundle,
  previous: GroupInfoMessage,
): Promise<void> {
  await mlsCheck(async () => {
    await verifyCommitSignature(bundle.commit, previous);
    await verifyTranscript(bundle.commit, previous, bundle.groupInfo);
    verifyGroupInfoSigner(bundle.commit, bundle.groupInfo);
    verifyLeafChanges(bundle.commit, previous, bundle.groupInfo);
  }, commitRefused);
}

/**
 * The first commit of a conversation registered without its epoch-0 GroupInfo: the creator's
 * leaf carries the key its device registered, the FramedContent signature verifies against it
 * when the commit has no path (returns whether it did), the confirmation tag is the new
 * GroupInfo's, the GroupInfo is signed by the committer, and every other leaf is an added one.
 */
export async function checkFirstCommit(
  bundle: DecodedBundle,
  creatorSignatureKey: Uint8Array,
): Promise<boolean> {
  return mlsCheck(async () => {
    const verified = await verifyFirstCommitSignature(
      bundle.commit,
      bundle.groupInfo,
      creatorSignatureKey,
    );
    verifyConfirmationTag(bundle.commit, bundle.groupInfo);
    verifyGroupInfoSigner(bundle.commit, bundle.groupInfo);
    verifyLeafChanges(bundle.commit, null, bundle.groupInfo);
    return verified;
  }, commitRefused);
}

/**
 * The new GroupInfo's own signature, tree and tree hash. Leaves byte-identical to the stored tree
 * of E, and the Adds' leaf nodes, are not verified again: the first were verified when that tree
 * was stored, the second on upload — a trust that holds only because every Add must then name a
 * key package Parley validated and handed out (checked under the lock; otherwise nothing is stored).
 */
export async function checkNewGroupInfo(
  bundle: DecodedBundle,
  previous: GroupInfoMessage | null,
): Promise<VerifiedGroupInfo> {
  return mlsCheck(
    () =>
      verifyGroupInfoMessage(bundle.groupInfo, {
        knownLeaf: knownLeaves(bundle.commit, previous, { addedKeyPackagesValidated: true }),
      }),
    (error) => invalidGroupInfo(error.reason, `The GroupInfo is invalid: ${error.message}`),
  );
}

// Encoded bytes of decoded GroupInfos kept per process (a 1,000-member one is ~230 KiB, and its
// decoded form several times that): enough for the groups where decoding costs anything.
const STORED_GROUP_INFO_BYTES = 4 * 1024 * 1024;

/**
 * Conversations' stored GroupInfos, decoded, for the next commit's checks: decoding a 1,000-member
 * tree costs ~25 ms, and the GroupInfo a commit stores is the one the next commit is checked
 * against. Only decoding is saved — an entry is used only while its bytes are exactly those the
 * database holds now (another instance may have moved the epoch), and those were verified when
 * they were stored. Least recently used entries go first, by their encoded size.
 */
export class StoredGroupInfos {
  private readonly entries = new Map<string, { bytes: Buffer; message: GroupInfoMessage }>();
  private size = 0;

  constructor(private readonly maxBytes = STORED_GROUP_INFO_BYTES) {}

  /** The decoded form of `bytes`, the conversation's stored GroupInfo, from memory when it is there. */
  async decode(conversationId: string, bytes: Buffer): Promise<GroupInfoMessage> {
    const hit = this.entries.get(conversationId);
    if (hit?.bytes.equals(bytes) === true) {
      this.entries.delete(conversationId);
      this.entries.set(conversationId, hit);
      return hit.message;
    }
    const message = await decodeGroupInfo(bytes, { maxBytes: bytes.length });
    this.remember(conversationId, bytes, message);
    return message;
  }

  /** Keeps `message`, decoded from `bytes`, as what the conversation probably stores now. */
  remember(conversationId: string, bytes: Buffer, message: GroupInfoMessage): void {
    this.forget(conversationId);
    if (bytes.length > this.maxBytes) return;
    this.entries.set(conversationId, { bytes, message });
    this.size += bytes.length;
    for (const [oldest] of this.entries) {
      if (this.size <= this.maxBytes) break;
      this.forget(oldest);
    }
  }

  private forget(conversationId: string): void {
    const entry = this.entries.get(conversationId);
    if (entry === undefined) return;
    this.entries.delete(conversationId);
    this.size -= entry.bytes.length;
  }
}

/** SHA-256 over the bundle's parts, each length-prefixed: what "the same bundle again" means. */
export function bundleDigest(bundle: BundleBytes): Buffer {
  const hash = createHash('sha256');
  const parts = [bundle.commit, bundle.groupInfo, bundle.welcome ?? null];
  for (const part of parts) {
    const length = Buffer.alloc(5);
    if (part === null) length.writeUInt8(0, 0);
    else {
      length.writeUInt8(1, 0);
      length.writeUInt32BE(part.length, 1);
    }
    hash.update(length);
    if (part !== null) hash.update(part);
  }
  return hash.digest();
}

/**
 * The roster read from the new GroupInfo's tree against the current one and the commit's
 * proposals: every old seat stays unless removed, every added device appears once.
 */
export function checkRoster(
  roster: readonly Seat[],
  commit: InspectedCommit,
  groupInfo: VerifiedGroupInfo,
  addedDeviceIds: readonly string[],
  deviceOf: (identity: Uint8Array) => string | null,
): RosterChange {
  const tree: Seat[] = groupInfo.leaves.map((leaf) => {
    const deviceId = deviceOf(leaf.identity);
    if (deviceId === null) {
      throw invalidGroupInfo(
        'UNKNOWN_IDENTITY',
        `Leaf ${leaf.leafIndex} is not a device of this server`,
      );
    }
    return { deviceId, leafIndex: leaf.leafIndex };
  });
  const removes = commit.proposals.flatMap((proposal) =>
    proposal.type === 'remove' ? [proposal.leafIndex] : [],
  );
  try {
    return rosterChange(roster, removes, addedDeviceIds, tree);
  } catch (error) {
    if (error instanceof RosterMismatch) throw invalidGroupInfo('ROSTER_MISMATCH', error.message);
    throw error;
  }
}

/** A Welcome exactly when the commit adds someone, addressed to exactly the added key packages. */
export function checkWelcome(
  welcomeRefs: readonly Uint8Array[] | null,
  addedRefs: readonly Uint8Array[],
): void {
  if (addedRefs.length === 0) {
    if (welcomeRefs !== null)
      throw invalidWelcome('UNEXPECTED', 'A commit that adds nobody has no Welcome');
    return;
  }
  if (welcomeRefs === null)
    throw invalidWelcome('MISSING', 'A commit that adds members needs their Welcome');
  const expected = new Set(addedRefs.map(toHex));
  const actual = new Set(welcomeRefs.map(toHex));
  if (
    welcomeRefs.length !== addedRefs.length ||
    actual.size !== expected.size ||
    [...expected].some((ref) => !actual.has(ref))
  ) {
    throw invalidWelcome(
      'WRONG_RECIPIENTS',
      'The Welcome must address exactly the added key packages',
    );
  }
}
