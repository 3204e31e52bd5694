import { type InspectedCommit, verifyExternalCommit } from '@parley/mls';
import { DomainError } from '../common/domain.errors.js';
import { mlsCheck } from '../common/mls-check.js';
import type { DeviceEntity } from '../devices/device.entity.js';
import { invalidCommit } from './conversations.errors.js';
import type { DecodedBundle } from './commit-bundle.checks.js';
import type { GroupInfoMessage } from '@parley/mls';

/**
 * The named checks of an external commit (RFC 9420 §12.4.3.2): a device joins a conversation of
 * its user by committing to the stored GroupInfo itself. Orchestrated by
 * ConversationsService.submitCommitBundle next to the member-commit checks.
 */

/** Whether a commit is an external one (its sender is new_member_commit). */
export function isExternalCommit(commit: InspectedCommit): boolean {
  return commit.sender.type === 'new_member_commit';
}

/** The device's user has no seat in the conversation (nor is its DM's peer): it may not join. */
export const notAMemberUser = () =>
  new DomainError('FORBIDDEN', "This device's user is not a member of the conversation", {
    reason: 'NOT_A_MEMBER_USER',
  });

/**
 * The joiner's leaf is the submitting device's: its credential identity is the device's, and
 * its signature key the one the device registered (when it registered one).
 */
export function checkJoinerIdentity(
  commit: InspectedCommit,
  device: Pick<DeviceEntity, 'signatureKey'>,
  identity: string,
): void {
  const leaf = commit.pathLeaf;
  if (leaf === null) throw invalidCommit('EXTERNAL_COMMIT_SHAPE', 'An external commit has a path');
  if (!Buffer.from(leaf.identity).equals(Buffer.from(identity))) {
    throw invalidCommit('WRONG_IDENTITY', "The joiner's identity is not the submitting device");
  }
  if (device.signatureKey !== null && !device.signatureKey.equals(leaf.signatureKey)) {
    throw invalidCommit('WRONG_SIGNER', "The joiner's signature key is not the device's");
  }
}

/**
 * The external commit against the stored GroupInfo of its epoch: shape (one ExternalInit, no
 * Remove, nothing by reference), the joiner's FramedContent signature, the transcript chain and
 * confirmation tag into the new GroupInfo, the old leaves kept and one new leaf — the joiner's,
 * which signed the new GroupInfo. Returns the joiner's leaf index.
 */
export function checkExternalCommitAgainstEpoch(
  bundle: DecodedBundle,
  previous: GroupInfoMessage | null,
): Promise<number> {
  if (previous === null) {
    // No GroupInfo is stored before a group's first commit: there is nothing to join from.
    throw invalidCommit('NO_GROUP_INFO', 'The conversation has no GroupInfo to join from yet');
  }
  return mlsCheck(
    () => verifyExternalCommit(bundle.commit, previous, bundle.groupInfo),
    (error) => invalidCommit(error.reason, `The external commit does not verify: ${error.message}`),
  );
}
