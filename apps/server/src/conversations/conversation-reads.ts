import type { EntityManager } from 'typeorm';
import { DomainError } from '../common/domain.errors.js';
import { isUuid } from '../common/uuid.js';
import type { ConversationEntity } from './conversation.entity.js';

/**
 * The read side of conversations, in a few set-based queries that never touch the GroupInfo
 * column unless it is asked for: a page of a device's conversations, the members of many
 * conversations at once, and the GroupInfos of many conversations at once.
 */

/** Conversations per page when the caller does not say. */
export const CONVERSATIONS_PAGE_DEFAULT = 50;
/** Most conversations per page: a page of 1,000-member groups is already ~100k member rows. */
export const CONVERSATIONS_PAGE_MAX = 100;

/** Where a page starts: after the conversation created at `micros` (µs since 1970) with `id`. */
export interface ConversationCursor {
  micros: string;
  id: string;
}

const CURSOR_PREFIX = 'c1:';

/**
 * The opaque cursor of a conversation in the list order (creation time, then id). Creation time
 * never changes, so a walk sees each conversation once even while messages arrive; a cursor
 * is the same for every device and instance.
 */
export function conversationCursor(position: ConversationCursor): string {
  return Buffer.from(`${CURSOR_PREFIX}${position.micros}:${position.id}`).toString('base64url');
}

/** The position a cursor names; BAD_USER_INPUT for anything that is not one of ours. */
export function parseConversationCursor(cursor: string): ConversationCursor {
  const bad = () =>
    new DomainError('BAD_USER_INPUT', 'after is not a cursor of conversations', {
      field: 'after',
    });
  if (cursor.length > 100 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw bad();
  const text = Buffer.from(cursor, 'base64url').toString('latin1');
  const match = /^c1:(\d{1,17}):([0-9a-f-]{36})$/.exec(text);
  if (match === null) throw bad();
  const [, micros, id] = match as unknown as [string, string, string];
  if (!isUuid(id)) throw bad();
  return { micros, id };
}

/** Checks `first` of a page of conversations. */
export function checkConversationsFirst(first: number): void {
  if (!Number.isInteger(first) || first < 1 || first > CONVERSATIONS_PAGE_MAX) {
    throw new DomainError('BAD_USER_INPUT', `first must be 1–${CONVERSATIONS_PAGE_MAX}`, {
      field: 'first',
      limit: CONVERSATIONS_PAGE_MAX,
    });
  }
}

/** A conversation row as the list reads it: everything but the GroupInfo, with the caller's seat. */
export interface ConversationRow {
  id: string;
  groupId: Buffer;
  kind: ConversationEntity['kind'];
  directUserLow: string | null;
  directUserHigh: string | null;
  ciphersuite: number;
  epoch: string;
  lastSeq: string;
  retainedFromSeq: string;
  messageTimerSeconds: number;
  createdAt: Date;
  /** Creation time in µs since 1970, exact (a Date holds only milliseconds): the cursor's key. */
  createdMicros: string;
}

/** The caller's seat and role, read with the row. */
export interface SeatedConversationRow extends ConversationRow {
  ackedSeq: string;
  callerRole: 'ADMIN' | 'MEMBER' | null;
}

/** The columns of a conversation row, all but "group_info". */
const CONVERSATION_COLUMNS = `c."id", c."group_id" AS "groupId", c."kind",
  c."direct_user_low" AS "directUserLow", c."direct_user_high" AS "directUserHigh",
  c."ciphersuite", c."epoch"::text AS "epoch", c."last_seq"::text AS "lastSeq",
  c."retained_from_seq"::text AS "retainedFromSeq",
  c."message_timer_seconds" AS "messageTimerSeconds", c."created_at" AS "createdAt",
  (extract(epoch FROM c."created_at") * 1000000)::bigint::text AS "createdMicros"`;

/**
 * Up to `first` conversations device $1 (of user $2) holds a seat in and is not leaving, in
 * creation order after `after`: one query (the seat, the conversation and the caller's role).
 * The cursor's instant is rebuilt from integer microseconds, so the comparison is exact.
 */
export async function conversationPage(
  manager: EntityManager,
  deviceId: string,
  userId: string,
  first: number,
  after: ConversationCursor | null,
): Promise<SeatedConversationRow[]> {
  const rows = await manager.query<SeatedConversationRow[]>(
    `SELECT ${CONVERSATION_COLUMNS}, m."acked_seq"::text AS "ackedSeq", r."role" AS "callerRole"
       FROM "conversation_members" m
       JOIN "conversations" c ON c."id" = m."conversation_id"
       LEFT JOIN "conversation_roles" r ON r."conversation_id" = c."id" AND r."user_id" = $2
      WHERE m."device_id" = $1 AND NOT m."leaving"
        AND ($3::bigint IS NULL
             OR (c."created_at", c."id") >
                (timestamptz 'epoch' + $3::bigint * interval '1 microsecond', $4::uuid))
      ORDER BY c."created_at", c."id"
      LIMIT $5`,
    [deviceId, userId, after?.micros ?? null, after?.id ?? null, first],
  );
  return rows;
}

/** One conversation (all but its GroupInfo), or null. */
export async function conversationRow(
  manager: EntityManager,
  conversationId: string,
): Promise<ConversationRow | null> {
  if (!isUuid(conversationId)) return null;
  const [row] = await manager.query<ConversationRow[]>(
    `SELECT ${CONVERSATION_COLUMNS} FROM "conversations" c WHERE c."id" = $1`,
    [conversationId],
  );
  return row ?? null;
}

/** One seat of a roster, with its device's user and that user's role. */
export interface MemberRow {
  conversationId: string;
  deviceId: string;
  userId: string;
  leafIndex: number;
  leaving: boolean;
  role: 'ADMIN' | 'MEMBER' | null;
}

/**
 * The rosters of many conversations in one query, each in leaf order. Seats of deleted devices
 * are left out (the seat waits for the commit that removes its leaf).
 */
export async function membersOf(
  manager: EntityManager,
  conversationIds: readonly string[],
): Promise<Map<string, MemberRow[]>> {
  const byConversation = new Map<string, MemberRow[]>(conversationIds.map((id) => [id, []]));
  if (conversationIds.length === 0) return byConversation;
  const rows = await manager.query<MemberRow[]>(
    `SELECT m."conversation_id" AS "conversationId", m."device_id" AS "deviceId",
            d."user_id" AS "userId", m."leaf_index" AS "leafIndex", m."leaving", r."role"
       FROM "conversation_members" m
       JOIN "devices" d ON d."id" = m."device_id"
       LEFT JOIN "conversation_roles" r
         ON r."conversation_id" = m."conversation_id" AND r."user_id" = d."user_id"
      WHERE m."conversation_id" = ANY($1::uuid[])
      ORDER BY m."conversation_id", m."leaf_index"`,
    [[...conversationIds]],
  );
  for (const row of rows) byConversation.get(row.conversationId)?.push(row);
  return byConversation;
}

/** The GroupInfos of many conversations in one query (null where there is none yet). */
export async function groupInfosOf(
  manager: EntityManager,
  conversationIds: readonly string[],
): Promise<Map<string, Buffer | null>> {
  if (conversationIds.length === 0) return new Map();
  const rows = await manager.query<{ id: string; groupInfo: Buffer | null }[]>(
    `SELECT c."id", c."group_info" AS "groupInfo" FROM "conversations" c
      WHERE c."id" = ANY($1::uuid[])`,
    [[...conversationIds]],
  );
  return new Map(rows.map((row) => [row.id, row.groupInfo]));
}

/**
 * Batches the loads that field resolvers of one GraphQL request ask for: every key asked for
 * before the next turn of the event loop is loaded in one call (the list items' field resolvers
 * all run within one turn). Nothing is kept after a load: a later field of the same request (the
 * second of two mutations) reads afresh.
 */
export class RequestBatch<V> {
  private readonly pending = new Map<string, Promise<V>>();
  private queue: { key: string; resolve(value: V): void; reject(error: unknown): void }[] = [];

  constructor(private readonly loadMany: (keys: string[]) => Promise<Map<string, V>>) {}

  /** The value of `key`, loaded with the other keys asked for in this turn. */
  load(key: string): Promise<V> {
    const waiting = this.pending.get(key);
    if (waiting !== undefined) return waiting;
    const promise = new Promise<V>((resolve, reject) => {
      if (this.queue.length === 0) setImmediate(() => void this.flush());
      this.queue.push({ key, resolve, reject });
    });
    this.pending.set(key, promise);
    return promise;
  }

  private async flush(): Promise<void> {
    const queue = this.queue;
    this.queue = [];
    this.pending.clear();
    try {
      const values = await this.loadMany(queue.map((entry) => entry.key));
      for (const entry of queue) {
        const value = values.get(entry.key);
        if (value === undefined) entry.reject(new Error(`Nothing loaded for ${entry.key}`));
        else entry.resolve(value);
      }
    } catch (error) {
      for (const entry of queue) entry.reject(error);
    }
  }
}

const batches = new WeakMap<object, Map<string, RequestBatch<unknown>>>();

/** The request's batch named `name`, created on first use; it lives as long as the context. */
export function requestBatch<V>(
  context: object,
  name: string,
  loadMany: (keys: string[]) => Promise<Map<string, V>>,
): RequestBatch<V> {
  let named = batches.get(context);
  if (named === undefined) {
    named = new Map();
    batches.set(context, named);
  }
  let batch = named.get(name) as RequestBatch<V> | undefined;
  if (batch === undefined) {
    batch = new RequestBatch(loadMany);
    named.set(name, batch);
  }
  return batch;
}
