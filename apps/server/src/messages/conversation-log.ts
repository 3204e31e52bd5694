import type { Sql } from '../database/pipelined-transaction.js';
import { conversationChannel } from '../live/live-event.js';
import type { Publication } from '../live/publish.js';
import { LogEntryEntity, type LogEntryKind } from './log-entry.entity.js';

/**
 * The one owner of a conversation's log: every entry — commit, application message, timer
 * change — is appended here, which allocates its `seq`, inserts it, moves the conversation's
 * counter (and its message timer) and builds its live event. Callers hold the conversation's
 * row lock, which orders appends across instances.
 */

/** An entry about to take the next place in a conversation's log. */
export interface NewLogEntry {
  kind: LogEntryKind;
  /** The epoch the entry was sent in. */
  epoch: bigint | string;
  senderDeviceId: string;
  data: Buffer;
  /** SHA-256 of `data` for deduplicated entries (application messages, timer changes). */
  digest: Buffer | null;
  /** TIMER: the timer it sets, in seconds (0 = off). */
  timerSeconds?: number;
  /** APPLICATION: the timer in force at its seq; it expires that long after it is stored. */
  expiresInSeconds?: number;
}

/** A locked conversation as the log needs it: where its counter stands. */
export interface LogHead {
  id: string;
  lastSeq: string;
}

// Fields per inserted row, and thus parameters per row of the multi-row INSERT below.
const FIELDS = 8;

/**
 * Appends `entries` after `head.lastSeq`, in order, in one statement, and moves the counter (and
 * the message timer when a TIMER entry is among them) in the caller's transaction. Storage time
 * is the transaction's `now()`; an application message's expiry is that plus its timer, computed
 * by the database so that both come from one clock.
 */
export async function appendToLog(
  sql: Sql,
  head: LogHead,
  entries: NewLogEntry[],
): Promise<LogEntryEntity[]> {
  if (entries.length === 0) return [];
  const first = BigInt(head.lastSeq) + 1n;
  const params: unknown[] = [head.id];
  const rows = entries.map((entry, i) => {
    const seq = (first + BigInt(i)).toString();
    params.push(
      seq,
      entry.kind,
      entry.epoch.toString(),
      entry.senderDeviceId,
      entry.data,
      entry.digest,
      entry.timerSeconds ?? null,
      entry.kind === 'APPLICATION' && (entry.expiresInSeconds ?? 0) > 0
        ? entry.expiresInSeconds
        : null,
    );
    const p = (k: number) => `$${2 + i * FIELDS + k}`;
    return `($1::uuid, ${p(0)}::bigint, ${p(1)}, ${p(2)}::bigint, ${p(3)}, ${p(4)}::bytea, ${p(5)}::bytea, ${p(6)}::integer, now() + make_interval(secs => ${p(7)}::integer))`;
  });
  const lastSeq = (first + BigInt(entries.length) - 1n).toString();
  const timer = entries.findLast((entry) => entry.kind === 'TIMER')?.timerSeconds;
  // The counter moves in the same statement (a data-modifying WITH always runs): one round trip
  // fewer for every append, which waits for its turn on a busy event loop.
  const next = params.push(lastSeq);
  const setTimer = timer === undefined ? '' : `, "message_timer_seconds" = $${params.push(timer)}`;
  const stored = await sql.query<
    { seq: string | number; created_at: Date; expires_at: Date | null }[]
  >(
    `WITH "moved" AS (
         UPDATE "conversations" SET "last_seq" = $${next}::bigint${setTimer} WHERE "id" = $1::uuid
       )
       INSERT INTO "log_entries"
         ("conversation_id", "seq", "kind", "epoch", "sender_device_id", "data", "digest", "timer_seconds", "expires_at")
       VALUES ${rows.join(', ')}
       RETURNING "seq", "created_at", "expires_at"`,
    params,
  );
  const times = new Map(stored.map((row) => [String(row.seq), row]));
  head.lastSeq = lastSeq;
  return entries.map((entry, i) => {
    const seq = (first + BigInt(i)).toString();
    const row = times.get(seq);
    // RETURNING gives every inserted row; without one, the insert did not do what it says.
    if (row === undefined) throw new Error(`Log entry ${seq} was not returned by its insert`);
    // A plain assignment: manager.create walks the entity's metadata for every row.
    return Object.assign(new LogEntryEntity(), {
      conversationId: head.id,
      seq,
      kind: entry.kind,
      epoch: entry.epoch.toString(),
      senderDeviceId: entry.senderDeviceId,
      data: entry.data,
      digest: entry.digest,
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      timerSeconds: entry.timerSeconds ?? null,
    });
  });
}

/** The live event of a stored entry, with its bytes, so no subscriber has to fetch it. */
export function logEntryPublication(entry: LogEntryEntity): Publication {
  return {
    channel: conversationChannel(entry.conversationId),
    event: {
      type: 'message',
      conversationId: entry.conversationId,
      seq: entry.seq,
      kind: entry.kind,
      epoch: entry.epoch,
      senderDeviceId: entry.senderDeviceId,
      createdAt: entry.createdAt,
      expiresAt: entry.expiresAt,
      timerSeconds: entry.timerSeconds,
      data: entry.data.toString('base64'),
    },
  };
}
