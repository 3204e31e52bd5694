/**
 * External commits (RFC 9420 §12.4.3.2): a new member joins from a GroupInfo by committing to
 * it itself. The checks mirror those of member commits in commit.ts, with the joiner's path
 * leaf standing where a member commit has the sender's leaf in the old tree.
 */
import { verifyFramedContentSignature } from 'ts-mls/framedContent.js';
import { encodeLeafNode } from 'ts-mls/leafNode.js';

import { bytesEqual, verifies } from './bytes.js';
import { partsOfCommitMessage, verifyTranscript, type CommitMessage } from './commit.js';
import { MlsError } from './errors.js';
import { leafBytesOf, partsOf, type GroupInfoMessage } from './group-info.js';

/**
 * The shape RFC 9420 §12.4.3.2 requires (and Parley narrows): sender new_member_commit, exactly
 * one ExternalInit, no proposal by reference, a path, and nothing else. A Remove of the joiner's
 * own earlier leaf (a "resync") is refused: Parley's devices never rejoin in place.
 */
export function checkExternalCommitShape(commit: CommitMessage): void {
  const { sender, proposals, proposalRefs, pathLeaf } = commit.inspected;
  if (sender.type !== 'new_member_commit') {
    throw new MlsError('WRONG_SENDER', `an external commit's sender is new_member_commit`);
  }
  if (proposalRefs.length > 0) {
    throw new MlsError(
      'EXTERNAL_COMMIT_SHAPE',
      'an external commit carries no proposal by reference',
    );
  }
  const inits = proposals.filter((proposal) => proposal.type === 'external_init').length;
  if (inits !== 1) {
    throw new MlsError(
      'MISSING_EXTERNAL_INIT',
      'an external commit carries exactly one ExternalInit',
    );
  }
  const other = proposals.find((proposal) => proposal.type !== 'external_init');
  if (other !== undefined) {
    throw new MlsError('EXTERNAL_COMMIT_SHAPE', `an external commit with a ${other.type} proposal`);
  }
  if (pathLeaf === null)
    throw new MlsError('EXTERNAL_COMMIT_SHAPE', 'an external commit has a path');
}

/**
 * Verifies an external commit against `previous` (the GroupInfo of its epoch, held by the
 * caller) and `next` (the GroupInfo it leads to): the FramedContent signature by the path's leaf
 * (the joiner's own key: that it belongs to the claimed identity is the caller's check) over the
 * old group context, the transcript chain and confirmation tag into `next`, every old leaf kept
 * byte for byte, exactly one new leaf — the path's leaf node — and `next` signed from it.
 * Returns the joiner's leaf index in `next`.
 */
export async function verifyExternalCommit(
  commit: CommitMessage,
  previous: GroupInfoMessage,
  next: GroupInfoMessage,
): Promise<number> {
  checkExternalCommitShape(commit);
  const { content, auth } = partsOfCommitMessage(commit);
  const { groupInfo, impl } = partsOf(previous);
  const path = content.commit.path;
  if (path === undefined) throw new MlsError('EXTERNAL_COMMIT_SHAPE', 'no path');
  if (!bytesEqual(content.groupId, previous.groupId) || content.epoch !== previous.epoch) {
    throw new MlsError('BAD_SIGNATURE', 'the commit is not for the group and epoch given');
  }
  const signed = await verifies(() =>
    verifyFramedContentSignature(
      path.leafNode.signaturePublicKey,
      'mls_public_message',
      content,
      auth,
      groupInfo.groupContext,
      impl.signature,
    ),
  );
  if (!signed) throw new MlsError('BAD_SIGNATURE', 'FramedContentTBS signature does not verify');

  const before = leafBytesOf(previous);
  const after = leafBytesOf(next);
  for (const [leafIndex, leaf] of before) {
    const kept = after.get(leafIndex);
    if (kept === undefined || !bytesEqual(kept, leaf)) {
      throw new MlsError('LEAF_REWRITTEN', `leaf ${leafIndex} changed in an external commit`);
    }
  }
  const fresh = [...after.keys()].filter((leafIndex) => !before.has(leafIndex));
  const joiner = fresh[0];
  if (fresh.length !== 1 || joiner === undefined) {
    throw new MlsError('LEAF_REWRITTEN', `an external commit adds one leaf, not ${fresh.length}`);
  }
  const joinerLeaf = after.get(joiner);
  if (joinerLeaf === undefined || !bytesEqual(joinerLeaf, encodeLeafNode(path.leafNode))) {
    throw new MlsError('LEAF_REWRITTEN', "the joiner's leaf is not its path's leaf node");
  }
  if (next.signer !== joiner) {
    throw new MlsError('WRONG_SIGNER', `signed by leaf ${next.signer}, joined at ${joiner}`);
  }
  // RFC 9420 §8.2: the same chain as for a member commit; it binds `next` to this commit.
  await verifyTranscript(commit, previous, next);
  return joiner;
}
