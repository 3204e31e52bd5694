import { DomainError, notFound } from '../common/domain.errors.js';
import { isUuid } from '../common/uuid.js';
import { UserEntity } from '../accounts/user.entity.js';
import type { EntityManager } from 'typeorm';
import { ConversationEntity } from './conversation.entity.js';
import type { CreateConversationInput } from './conversation.input.js';
import { ConversationKindValue } from './conversation.model.js';

/** The two users of a direct conversation, ordered as stored (low < high). */
export interface DirectPair {
  low: string;
  high: string;
  peerUserId: string;
}

/** A direct conversation of the pair exists: the caller should join that one. */
export const directConversationExists = (conversationId: string) =>
  new DomainError('DIRECT_CONVERSATION_EXISTS', 'A direct conversation with that user exists', {
    conversationId,
  });

/**
 * The pair a new conversation is for: null for a GROUP (which takes no peer), the ordered pair
 * of the caller and the peer for a DIRECT one. BAD_USER_INPUT for a missing or stray peer, or a
 * direct conversation with oneself.
 */
export function directPair(userId: string, input: CreateConversationInput): DirectPair | null {
  const peer = input.peerUserId?.toLowerCase() ?? null;
  if (input.kind !== ConversationKindValue.DIRECT) {
    if (peer !== null) {
      throw new DomainError('BAD_USER_INPUT', 'A GROUP conversation takes no peerUserId', {
        field: 'peerUserId',
      });
    }
    return null;
  }
  if (peer === null) {
    throw new DomainError('BAD_USER_INPUT', 'A DIRECT conversation needs the peerUserId', {
      field: 'peerUserId',
    });
  }
  if (peer === userId) {
    throw new DomainError('BAD_USER_INPUT', 'A direct conversation is with another user', {
      field: 'peerUserId',
    });
  }
  return userId < peer
    ? { low: userId, high: peer, peerUserId: peer }
    : { low: peer, high: userId, peerUserId: peer };
}

/** The existing direct conversation of the pair, if any. */
export async function existingDirect(
  manager: EntityManager,
  pair: DirectPair,
): Promise<ConversationEntity | null> {
  return manager.findOneBy(ConversationEntity, {
    kind: 'DIRECT',
    directUserLow: pair.low,
    directUserHigh: pair.high,
  });
}

/**
 * Checks, inside the creating transaction, that the peer exists and that the pair has no direct
 * conversation yet. The unique key on the pair still decides a race between two instances.
 */
export async function checkNewDirect(manager: EntityManager, pair: DirectPair): Promise<void> {
  const peer = isUuid(pair.peerUserId)
    ? await manager.existsBy(UserEntity, { id: pair.peerUserId })
    : false;
  if (!peer) throw notFound('User');
  const existing = await existingDirect(manager, pair);
  if (existing !== null) throw directConversationExists(existing.id);
}

/** The other user of a direct conversation, seen from `userId`; null for a group. */
export function peerOf(
  conversation: Pick<ConversationEntity, 'directUserLow' | 'directUserHigh'>,
  userId: string,
): string | null {
  if (conversation.directUserLow === null || conversation.directUserHigh === null) return null;
  return conversation.directUserLow === userId
    ? conversation.directUserHigh
    : conversation.directUserLow;
}
