import { DomainError, notFound } from '../common/domain.errors.js';
import { isUuid } from '../common/uuid.js';
import { DeviceEntity } from '../devices/device.entity.js';
import { conversationChannel } from '../live/live-event.js';
import type { Publication } from '../live/publish.js';
import { type EntityManager, In } from 'typeorm';
import type { ConversationState } from './conversation.entity.js';
import { type ConversationRole, ConversationRoleEntity } from './conversation-role.entity.js';
import type { RosterChange } from './roster.js';
import { adminRequired, checkCommitAuthorization } from './roles.checks.js';

/**
 * Roles of users in conversations, kept next to the roster: a role row exists while its user has
 * a seat. The rules themselves (who may commit what) are in roles.checks.ts.
 */

/** The demotion would leave the group without an admin while other users remain. */
export const lastAdmin = () =>
  new DomainError('LAST_ADMIN', 'The last admin cannot be demoted; promote another user first');

/** Each user's role in the conversation. */
export async function rolesOf(
  manager: EntityManager,
  conversationId: string,
): Promise<Map<string, ConversationRole>> {
  const rows = await manager.find(ConversationRoleEntity, { where: { conversationId } });
  return new Map(rows.map((row) => [row.userId, row.role]));
}

/** The users of devices that exist (a deleted device has none). */
async function usersOfDevices(
  manager: EntityManager,
  deviceIds: readonly string[],
): Promise<Map<string, string>> {
  if (deviceIds.length === 0) return new Map();
  const devices = await manager.find(DeviceEntity, {
    select: { id: true, userId: true },
    where: { id: In([...deviceIds]) },
  });
  return new Map(devices.map((device) => [device.id, device.userId]));
}

/**
 * Refuses a commit whose roster change its sender's user may not make (see
 * checkCommitAuthorization). Runs under the conversation's row lock, so roles cannot change
 * between this check and the commit being stored. Returns the users of the added and removed
 * devices that exist, for {@link applyRosterChange}; `known` gives those the caller read already
 * in this transaction, and only the others are read.
 */
export async function authorizeCommit(
  manager: EntityManager,
  conversation: ConversationState,
  committerUserId: string,
  roster: readonly { deviceId: string; leaving: boolean }[],
  change: RosterChange,
  known: ReadonlyMap<string, string> = new Map(),
): Promise<Map<string, string>> {
  if (change.added.length === 0 && change.removed.length === 0) return new Map();
  const users = await usersOfDevices(
    manager,
    [...change.added, ...change.removed]
      .map((seat) => seat.deviceId)
      .filter((deviceId) => !known.has(deviceId)),
  );
  for (const [deviceId, userId] of known) users.set(deviceId, userId);
  const leaving = new Set(roster.filter((seat) => seat.leaving).map((seat) => seat.deviceId));
  const role = await manager.findOneBy(ConversationRoleEntity, {
    conversationId: conversation.id,
    userId: committerUserId,
  });
  checkCommitAuthorization({
    kind: conversation.kind,
    directUsers:
      conversation.directUserLow !== null && conversation.directUserHigh !== null
        ? [conversation.directUserLow, conversation.directUserHigh]
        : null,
    committerUserId,
    committerRole: role?.role ?? null,
    added: change.added.map((seat) => ({
      deviceId: seat.deviceId,
      // An added device exists (its key package was just claimed); '' never matches a user.
      userId: users.get(seat.deviceId) ?? '',
    })),
    removed: change.removed.map((seat) => ({
      deviceId: seat.deviceId,
      userId: users.get(seat.deviceId) ?? null,
      leaving: leaving.has(seat.deviceId),
    })),
  });
  return users;
}

/**
 * After a commit changed the roster (at log entry `seq`): users whose first device came in get a
 * role (MEMBER in a group, ADMIN in a direct conversation, where both users are equal), users
 * with no seat left lose theirs, and a group left without an admin gets one.
 */
export async function applyRosterChange(
  manager: EntityManager,
  conversation: ConversationState,
  seq: string,
  change: RosterChange,
  /** The users of (at least) the added devices, as {@link authorizeCommit} read them. */
  users: ReadonlyMap<string, string>,
): Promise<Publication[]> {
  if (change.added.length === 0 && change.removed.length === 0) return [];
  const newcomers = [...new Set(change.added.flatMap((seat) => users.get(seat.deviceId) ?? []))];
  if (newcomers.length > 0) {
    await manager
      .createQueryBuilder()
      .insert()
      .into(ConversationRoleEntity)
      .values(
        newcomers.map((userId) => ({
          conversationId: conversation.id,
          userId,
          role: conversation.kind === 'DIRECT' ? ('ADMIN' as const) : ('MEMBER' as const),
          joinedSeq: seq,
        })),
      )
      .orIgnore()
      .execute();
  }
  if (change.removed.length > 0) {
    // Users none of whose devices is on the roster any more.
    await manager.query(
      `DELETE FROM "conversation_roles" r WHERE r."conversation_id" = $1
         AND NOT EXISTS (
           SELECT 1 FROM "conversation_members" m JOIN "devices" d ON d."id" = m."device_id"
            WHERE m."conversation_id" = r."conversation_id" AND d."user_id" = r."user_id")`,
      [conversation.id],
    );
  }
  return promoteIfNoAdmin(manager, conversation);
}

/**
 * A group whose remaining users (those with a device on the roster that is neither leaving nor
 * deleted) include no admin gets one: the longest-standing of them, as WhatsApp does.
 */
export async function promoteIfNoAdmin(
  manager: EntityManager,
  conversation: ConversationState,
): Promise<Publication[]> {
  if (conversation.kind !== 'GROUP') return [];
  const active = await promotable(manager, conversation.id);
  const [first] = active;
  if (first === undefined || active.some((row) => row.role === 'ADMIN')) return [];
  await manager.update(
    ConversationRoleEntity,
    { conversationId: conversation.id, userId: first.user_id },
    { role: 'ADMIN' },
  );
  return [roleChanged(conversation.id, first.user_id, 'ADMIN')];
}

/** The live event of a role change, for every member device. */
export function roleChanged(
  conversationId: string,
  userId: string,
  role: ConversationRole,
): Publication {
  return {
    channel: conversationChannel(conversationId),
    event: { type: 'role', conversationId, userId, role },
  };
}

/**
 * An admin sets a user's role in a group (conversation row locked by the caller, so that two
 * demotions cannot both see another admin). Returns the publication, or null when nothing
 * changed.
 */
export async function setRole(
  manager: EntityManager,
  conversation: ConversationState,
  callerUserId: string,
  targetUserId: string,
  role: ConversationRole,
): Promise<Publication | null> {
  if (conversation.kind === 'DIRECT') {
    throw new DomainError('BAD_USER_INPUT', 'Both users of a direct conversation are equal', {
      field: 'conversationId',
    });
  }
  const roles = await rolesOf(manager, conversation.id);
  if (roles.get(callerUserId) !== 'ADMIN') throw adminRequired('Only an admin changes roles');
  const current = isUuid(targetUserId) ? roles.get(targetUserId) : undefined;
  if (current === undefined) throw notFound('Member');
  if (current === role) return null;
  if (role === 'MEMBER') {
    const remaining = await promotable(manager, conversation.id);
    const otherAdmin = remaining.some(
      (row) => row.user_id !== targetUserId && row.role === 'ADMIN',
    );
    if (!otherAdmin) throw lastAdmin();
  }
  await manager.update(
    ConversationRoleEntity,
    { conversationId: conversation.id, userId: targetUserId },
    { role },
  );
  return roleChanged(conversation.id, targetUserId, role);
}

/** Users with a device on the roster that is neither leaving nor deleted, longest-standing first. */
async function promotable(
  manager: EntityManager,
  conversationId: string,
): Promise<{ user_id: string; role: ConversationRole }[]> {
  return manager.query(
    `SELECT r."user_id", r."role" FROM "conversation_roles" r
      WHERE r."conversation_id" = $1
        AND EXISTS (
          SELECT 1 FROM "conversation_members" m JOIN "devices" d ON d."id" = m."device_id"
           WHERE m."conversation_id" = r."conversation_id" AND d."user_id" = r."user_id"
             AND NOT m."leaving")
      ORDER BY r."joined_seq", r."user_id"`,
    [conversationId],
  );
}
