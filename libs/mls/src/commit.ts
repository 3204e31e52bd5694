import {
  verifyFramedContentSignature,
  type FramedContentAuthDataCommit,
  type FramedContentCommit,
} from 'ts-mls/framedContent.js';
import { encodeLeafNode } from 'ts-mls/leafNode.js';
import { createConfirmedHash, createInterimHash } from 'ts-mls/transcriptHash.js';
import { treeHashRoot } from 'ts-mls/treeHash.js';

import { bytesEqual, bytesKey, verifies } from './bytes.js';
import { DEFAULT_MAX_MESSAGE_BYTES, resolveMaxBytes, type DecodeOptions } from './codec.js';
import { MlsError, asMlsError } from './errors.js';
import { leafBytesOf, partsOf, type GroupInfoMessage, type KnownLeaf } from './group-info.js';
import { decodePublicCommit, describeCommit, type InspectedCommit } from './inspect.js';

/**
 * A PublicMessage commit decoded strictly, with what {@link inspectCommit} reports of it; the
 * handle the commit checks below work on. Nothing in it is authenticated yet.
 */
export class CommitMessage {
  /** @internal Made by {@link decodeCommit} only. */
  constructor(
    /** Group id, epoch, sender, proposals and path leaf, as inspectCommit reports them. */
    readonly inspected: InspectedCommit,
  ) {}
}

interface CommitParts {
  content: FramedContentCommit;
  auth: FramedContentAuthDataCommit;
}

const commitParts = new WeakMap<CommitMessage, CommitParts>();

function partsOfCommit(commit: CommitMessage): CommitParts {
  const parts = commitParts.get(commit);
  if (parts === undefined) throw new TypeError('not a CommitMessage from decodeCommit');
  return parts;
}

/** @internal The decoded content and auth of a commit, for external-commit.ts. */
export const partsOfCommitMessage = partsOfCommit;

/** Decodes an MLSMessage(public_message) carrying a commit; see inspectCommit for what it reports. */
export function decodeCommit(
  bytes: Uint8Array,
  options: DecodeOptions = {},
): Promise<CommitMessage> {
  let maxBytes: number;
  try {
    maxBytes = resolveMaxBytes(options.maxBytes, DEFAULT_MAX_MESSAGE_BYTES);
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new TypeError(String(error)));
  }
  try {
    const parts = decodePublicCommit(bytes, maxBytes);
    const commit = new CommitMessage(describeCommit(parts.content));
    commitParts.set(commit, parts);
    return Promise.resolve(commit);
  } catch (error) {
    return Promise.reject(asMlsError(error, 'DECODE'));
  }
}

function memberSender(commit: CommitMessage): number {
  const { sender } = commit.inspected;
  if (sender.type !== 'member') throw new MlsError('WRONG_SENDER', `a ${sender.type} sender`);
  return sender.leafIndex;
}

const addedLeavesCache = new WeakMap<CommitParts, Uint8Array[]>();

/** The encoded leaf nodes of the commit's Adds, encoded once per commit (both checks use them). */
function addedLeaves(parts: CommitParts): Uint8Array[] {
  const cached = addedLeavesCache.get(parts);
  if (cached !== undefined) return cached;
  const leaves = parts.content.commit.proposals.flatMap((entry) =>
    entry.proposalOrRefType === 'proposal' && entry.proposal.proposalType === 'add'
      ? [encodeLeafNode(entry.proposal.add.keyPackage.leafNode)]
      : [],
  );
  addedLeavesCache.set(parts, leaves);
  return leaves;
}

/**
 * RFC 9420 §6.1: the commit's FramedContent signature, against the sender's leaf in the tree of
 * `previous` (the GroupInfo of the commit's epoch, held by the caller — never a key the commit
 * brings) and over FramedContentTBS with that GroupInfo's group context.
 */
export async function verifyCommitSignature(
  commit: CommitMessage,
  previous: GroupInfoMessage,
): Promise<void> {
  const { content, auth } = partsOfCommit(commit);
  const { groupInfo, tree, impl } = partsOf(previous);
  const leafIndex = memberSender(commit);
  if (!bytesEqual(content.groupId, previous.groupId) || content.epoch !== previous.epoch) {
    throw new MlsError('BAD_SIGNATURE', 'the commit is not for the group and epoch given');
  }
  const node = tree[2 * leafIndex];
  if (node?.nodeType !== 'leaf') throw new MlsError('WRONG_SENDER', `leaf ${leafIndex} is blank`);
  const signed = await verifies(() =>
    verifyFramedContentSignature(
      node.leaf.signaturePublicKey,
      'mls_public_message',
      content,
      auth,
      groupInfo.groupContext,
      impl.signature,
    ),
  );
  if (!signed) throw new MlsError('BAD_SIGNATURE', 'FramedContentTBS signature does not verify');
}

/**
 * The first commit of a group whose epoch-0 GroupInfo the caller never held (OpenMLS clients
 * cannot export one): the sender must be leaf 0 and `next`'s leaf 0 must carry `signatureKey`.
 * FramedContentTBS covers the epoch-0 group context, whose tree hash is that of the creator's
 * epoch-0 leaf; a commit without a path leaves that leaf as it was, so the context is rebuilt
 * from `next` (extensions unchanged: GroupContextExtensions proposals are the caller's to refuse)
 * and the signature verified. With a path the old leaf is gone and nothing can rebuild the
 * context: returns false, the signature unverified.
 */
export async function verifyFirstCommitSignature(
  commit: CommitMessage,
  next: GroupInfoMessage,
  signatureKey: Uint8Array,
): Promise<boolean> {
  const { content, auth } = partsOfCommit(commit);
  const { groupInfo, tree, impl } = partsOf(next);
  if (memberSender(commit) !== 0 || content.epoch !== 0n) {
    throw new MlsError('WRONG_SENDER', 'the first commit comes from leaf 0 in epoch 0');
  }
  const creator = tree[0];
  if (creator?.nodeType !== 'leaf' || !bytesEqual(creator.leaf.signaturePublicKey, signatureKey)) {
    throw new MlsError('WRONG_SIGNER', "leaf 0 does not carry the creator's signature key");
  }
  if (content.commit.path !== undefined) return false;
  const context = {
    ...groupInfo.groupContext,
    epoch: 0n,
    treeHash: await treeHashRoot([creator], impl.hash),
    // RFC 9420 §11: a new group starts from an empty confirmed transcript hash.
    confirmedTranscriptHash: new Uint8Array(0),
  };
  const signed = await verifies(() =>
    verifyFramedContentSignature(
      signatureKey,
      'mls_public_message',
      content,
      auth,
      context,
      impl.signature,
    ),
  );
  if (!signed) throw new MlsError('BAD_SIGNATURE', 'FramedContentTBS signature does not verify');
  return true;
}

/** The commit's confirmation_tag must be the one `next` (the GroupInfo of the new epoch) carries. */
export function verifyConfirmationTag(commit: CommitMessage, next: GroupInfoMessage): void {
  const { auth } = partsOfCommit(commit);
  if (!bytesEqual(auth.confirmationTag, partsOf(next).groupInfo.confirmationTag)) {
    throw new MlsError(
      'CONFIRMATION_MISMATCH',
      "the GroupInfo's confirmation tag is not the commit's",
    );
  }
}

/**
 * RFC 9420 §8.2: interim_transcript_hash of `previous`'s epoch from its confirmed transcript hash
 * and confirmation tag, then confirmed_transcript_hash of the new epoch from the commit, which
 * must be `next`'s; then the confirmation tags must agree. Binds `next` to this very commit.
 */
export async function verifyTranscript(
  commit: CommitMessage,
  previous: GroupInfoMessage,
  next: GroupInfoMessage,
): Promise<void> {
  const { content, auth } = partsOfCommit(commit);
  const { groupInfo: before, impl } = partsOf(previous);
  const interim = await createInterimHash(
    before.groupContext.confirmedTranscriptHash,
    before.confirmationTag,
    impl.hash,
  );
  const confirmed = await createConfirmedHash(
    interim,
    { wireformat: 'mls_public_message', content, signature: auth.signature },
    impl.hash,
  );
  if (!bytesEqual(confirmed, partsOf(next).groupInfo.groupContext.confirmedTranscriptHash)) {
    throw new MlsError('TRANSCRIPT_MISMATCH', 'the GroupInfo does not follow from this commit');
  }
  verifyConfirmationTag(commit, next);
}

/** `next` must be signed by the committer (its signature is checked against that leaf by verifyGroupInfoMessage). */
export function verifyGroupInfoSigner(commit: CommitMessage, next: GroupInfoMessage): void {
  const committer = memberSender(commit);
  if (next.signer !== committer) {
    throw new MlsError('WRONG_SIGNER', `signed by leaf ${next.signer}, committed by ${committer}`);
  }
}

/**
 * What a commit may do to the leaves (RFC 9420 §12.4.2): every leaf of `previous` that the commit
 * neither removes nor replaces (the committer's, when it has a path) is byte-identical in `next`;
 * the committer's leaf is its path's leaf node; every other leaf of `next` is the leaf node of one
 * of its Adds, each Add appearing once. Without `previous` (a first commit, see
 * verifyFirstCommitSignature) only the committer's and the added leaves can be checked.
 */
export function verifyLeafChanges(
  commit: CommitMessage,
  previous: GroupInfoMessage | null,
  next: GroupInfoMessage,
): void {
  const parts = partsOfCommit(commit);
  const committer = memberSender(commit);
  const path = parts.content.commit.path;
  const removed = new Set(
    commit.inspected.proposals.flatMap((p) => (p.type === 'remove' ? [p.leafIndex] : [])),
  );
  const before = previous === null ? null : leafBytesOf(previous);
  const after = leafBytesOf(next);
  const accounted = new Set<number>();
  if (path !== undefined) {
    const leaf = after.get(committer);
    if (leaf === undefined || !bytesEqual(leaf, encodeLeafNode(path.leafNode))) {
      throw new MlsError('LEAF_REWRITTEN', "the committer's leaf is not its path's leaf node");
    }
    accounted.add(committer);
  } else if (before === null) {
    // The creator's epoch-0 leaf was never seen; verifyFirstCommitSignature binds it.
    accounted.add(committer);
  }
  for (const [leafIndex, leaf] of before ?? []) {
    if (removed.has(leafIndex) || accounted.has(leafIndex)) continue;
    const kept = after.get(leafIndex);
    if (kept === undefined || !bytesEqual(kept, leaf)) {
      throw new MlsError('LEAF_REWRITTEN', `leaf ${leafIndex} changed though the commit keeps it`);
    }
    accounted.add(leafIndex);
  }
  const adds = new Map<string, number>();
  for (const leaf of addedLeaves(parts)) {
    const key = bytesKey(leaf);
    adds.set(key, (adds.get(key) ?? 0) + 1);
  }
  for (const [leafIndex, leaf] of after) {
    if (accounted.has(leafIndex)) continue;
    const key = bytesKey(leaf);
    const left = adds.get(key) ?? 0;
    if (left === 0) {
      throw new MlsError('LEAF_REWRITTEN', `leaf ${leafIndex} is neither kept nor added`);
    }
    adds.set(key, left - 1);
  }
  if ([...adds.values()].some((left) => left > 0)) {
    throw new MlsError('LEAF_REWRITTEN', 'an added leaf is missing from the tree');
  }
}

/**
 * Leaves of `next` whose signatures need not be verified again, for verifyGroupInfoMessage: those
 * byte-identical to the leaf at the same index in `previous` (verified when `previous` was), and —
 * only when the caller promises it validated every added key package itself (Parley requires
 * each Add to name a key package it validated on upload and handed out) — the Adds' leaf nodes.
 */
export function knownLeaves(
  commit: CommitMessage,
  previous: GroupInfoMessage | null,
  { addedKeyPackagesValidated }: { addedKeyPackagesValidated: boolean },
): KnownLeaf {
  const before = previous === null ? new Map<number, Uint8Array>() : leafBytesOf(previous);
  const added = new Set(
    addedKeyPackagesValidated ? addedLeaves(partsOfCommit(commit)).map(bytesKey) : [],
  );
  return (leafIndex, leaf) => {
    const old = before.get(leafIndex);
    return (old !== undefined && bytesEqual(old, leaf)) || added.has(bytesKey(leaf));
  };
}
