import { DomainError } from '../common/domain.errors.js';
import type { ConversationKind } from './conversation.entity.js';
import type { ConversationRole } from './conversation-role.entity.js';

/** A device a commit adds, with its user. */
export interface AddedDevice {
  deviceId: string;
  userId: string;
}

/** A seat a commit removes: its user (null once the device is deleted) and whether it is leaving. */
export interface RemovedSeat {
  deviceId: string;
  userId: string | null;
  leaving: boolean;
}

/** What the authorization of a commit looks at. */
export interface CommitAuthorization {
  kind: ConversationKind;
  /** DIRECT: the two users; null for a GROUP. */
  directUsers: readonly [string, string] | null;
  committerUserId: string;
  /** The committer's user's role (null: none stored, a member). */
  committerRole: ConversationRole | null;
  added: readonly AddedDevice[];
  removed: readonly RemovedSeat[];
}

/** Refused because the committer's user is not an admin of the group. */
export const adminRequired = (message: string) =>
  new DomainError('FORBIDDEN', message, { reason: 'ADMIN_REQUIRED' });

/** Refused because the change would bring a third user into a direct conversation. */
export const directConversation = (message: string) =>
  new DomainError('FORBIDDEN', message, { reason: 'DIRECT_CONVERSATION' });

/**
 * Whether the committer may make these roster changes. In a DIRECT conversation both users are
 * equal (each may add and remove the other's devices) and nobody else can be added. In a GROUP,
 * adding or removing another user's devices takes an admin — except removing seats that are
 * leaving or whose device was deleted, which any member's SDK does automatically, and which
 * would otherwise wait for an admin to come online. A user's own other devices are theirs to add
 * and remove.
 */
export function checkCommitAuthorization(commit: CommitAuthorization): void {
  if (commit.kind === 'DIRECT') {
    const users = new Set(commit.directUsers ?? []);
    const stranger = commit.added.find((add) => !users.has(add.userId));
    if (stranger !== undefined) {
      throw directConversation('A direct conversation holds the devices of its two users only');
    }
    return;
  }
  if (commit.committerRole === 'ADMIN') return;
  if (commit.added.some((add) => add.userId !== commit.committerUserId)) {
    throw adminRequired("Only an admin adds other users' devices");
  }
  const removesOthers = commit.removed.some(
    (seat) => !seat.leaving && seat.userId !== null && seat.userId !== commit.committerUserId,
  );
  if (removesOthers) throw adminRequired("Only an admin removes other users' devices");
}
