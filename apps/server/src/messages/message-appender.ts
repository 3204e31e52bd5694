import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { DomainError, notFound } from '../common/domain.errors.js';
import { isUuid } from '../common/uuid.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { invalidMessage, notAMember } from '../conversations/conversations.errors.js';
import { isDatabaseUnavailable, isUniqueViolation } from '../database/errors.js';
import {
  pipelinedTransaction,
  type PipelinedTransaction,
  type Sql,
} from '../database/pipelined-transaction.js';
import { DevicesService } from '../devices/devices.service.js';
import { EventBus } from '../events/event-bus.js';
import { publishCommitted } from '../live/publish.js';
import { Metrics } from '../metrics/metrics.js';
import { appendToLog, logEntryPublication, type NewLogEntry } from './conversation-log.js';
import { ExpirySweeper } from './expiry-sweeper.js';
import { LogEntryEntity, type LogEntryKind } from './log-entry.entity.js';

/** An application message waiting for its place in the log. */
export interface PendingMessage {
  userId: string;
  deviceId: string;
  conversationId: string;
  groupId: Uint8Array;
  epoch: bigint;
  data: Buffer;
  /** SHA-256 of `data`: the same bytes are stored once per conversation. */
  digest: Buffer;
  /**
   * Set for a change of the conversation's message timer (a TIMER entry; 0 = off), in order with
   * the messages around it; absent for an application message.
   */
  timerSeconds?: number;
}

interface Waiter extends PendingMessage {
  resolve: (entry: LogEntryEntity) => void;
  reject: (error: unknown) => void;
}

/** What a batch transaction decided for one waiter, settled only once it committed. */
type Outcome =
  | { waiter: Waiter; entry: LogEntryEntity; stored: boolean }
  | { waiter: Waiter; error: unknown }
  // Its device holds no seat: why (not the caller's, gone, never on the roster) is looked up
  // after the transaction, which it does not change.
  | { waiter: Waiter; notSeated: true };

// Enough to amortise a transaction over many messages, small enough to keep each one short.
const MAX_BATCH = 256;
// The bounds of PostgreSQL's bigint, the column type of epochs: beyond them the insert would fail.
const MAX_BIGINT = 2n ** 63n - 1n;
// Device ids are server-made (UUIDs); anything much longer is no device of ours.
const MAX_DEVICE_ID = 255;
const DIGEST_BYTES = 32;

/**
 * What can be refused without the conversation's lock, before a message joins a batch: a value
 * that could only fail inside the batch transaction (and take its neighbours with it) is the
 * sender's error alone. Null when the message may queue.
 */
export function checkPending(message: PendingMessage): DomainError | null {
  if (!isUuid(message.conversationId)) return notFound('Conversation');
  if (
    message.deviceId.length === 0 ||
    message.deviceId.length > MAX_DEVICE_ID ||
    message.deviceId.includes('\0')
  ) {
    return new DomainError('BAD_USER_INPUT', 'deviceId is not a device id', { field: 'deviceId' });
  }
  if (message.epoch < 0n || message.epoch > MAX_BIGINT) {
    return invalidMessage('EPOCH_OUT_OF_WINDOW', `Epoch ${message.epoch} is out of range`);
  }
  if (message.data.length === 0) {
    return new DomainError('BAD_USER_INPUT', 'message is empty', { field: 'message' });
  }
  if (message.digest.length !== DIGEST_BYTES) {
    // Computed by the server, never sent: a caller bug, but still this message's alone.
    return new DomainError('BAD_USER_INPUT', 'message digest is malformed', { field: 'message' });
  }
  return null;
}

/**
 * Appends application messages to conversation logs in batches ("group commit"): while one
 * transaction for a conversation runs, new messages for it queue up, and the next transaction
 * takes them all — one counter bump and one multi-row insert for the batch. A single hot
 * conversation then costs a transaction per batch, not per message. Order is the queue's order;
 * the row lock on the conversation keeps several instances (and commits) correctly interleaved.
 *
 * Sends are idempotent: bytes already in the conversation's log (or earlier in the same batch)
 * get the entry that holds them, and nothing is stored. One indexed lookup per batch, under the
 * row lock that every append takes, so a retry racing on another instance still finds them.
 */
@Injectable()
export class MessageAppender {
  private readonly queues = new Map<string, Waiter[]>();
  private readonly logger = new Logger(MessageAppender.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly devices: DevicesService,
    private readonly events: EventBus,
    @Inject(CONFIG) private readonly config: Config,
    private readonly metrics: Metrics,
    private readonly expiry: ExpirySweeper,
  ) {}

  /**
   * Resolves with the entry holding the message's bytes once its batch committed — a new one,
   * or the one that already held them — or rejects with a domain error.
   */
  append(message: PendingMessage): Promise<LogEntryEntity> {
    const refused = checkPending(message);
    if (refused !== null) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      const queue = this.queues.get(message.conversationId);
      if (queue !== undefined) {
        queue.push({ ...message, resolve, reject });
        return;
      }
      this.queues.set(message.conversationId, [{ ...message, resolve, reject }]);
      void this.drain(message.conversationId);
    });
  }

  /**
   * Every check {@link append} makes of a message — well formed, a seat on the roster held by
   * the caller's device, the conversation's group, the epoch window — without storing it: for
   * ephemeral signals, which are fanned out live and written nowhere. Resolves when the message
   * may go out; rejects with the domain error `append` would give. One short read transaction,
   * no lock: nothing is written, so nothing needs ordering against other writers.
   */
  async check(message: PendingMessage): Promise<void> {
    const refused = checkPending(message);
    if (refused !== null) throw refused;
    const [conversation, owners] = await pipelinedTransaction(this.dataSource, (sql) =>
      Promise.all([
        conversationHead(sql, message.conversationId, { lock: false }),
        ownersOfSeats(sql, message.conversationId, [message]),
      ]),
    );
    if (conversation === null) throw notFound('Conversation');
    const refusal = refusalOf(owners, conversation.groupId, message);
    if (refusal === NOT_SEATED) throw await this.whyNotMember(message);
    if (refusal !== null) throw refusal;
    const epoch = BigInt(conversation.epoch);
    const outOfWindow = epochRefusal(
      epoch,
      epoch - BigInt(this.config.messageEpochWindow),
      message.epoch,
    );
    if (outOfWindow !== null) throw outOfWindow;
  }

  private async drain(conversationId: string): Promise<void> {
    const queue = this.queues.get(conversationId) ?? [];
    while (queue.length > 0) {
      const batch = queue.splice(0, MAX_BATCH);
      try {
        const outcomes = await this.commitBatch(conversationId, batch);
        // Only now, committed, do senders hear of the outcome and subscribers of the entries.
        const stored: LogEntryEntity[] = [];
        for (const outcome of outcomes) {
          if ('error' in outcome) {
            outcome.waiter.reject(outcome.error);
          } else if ('notSeated' in outcome) {
            void this.whyNotMember(outcome.waiter).then(outcome.waiter.reject);
          } else {
            outcome.waiter.resolve(outcome.entry);
            if (outcome.stored) stored.push(outcome.entry);
          }
        }
        this.metrics.appended(batch.length, stored.length);
        await publishCommitted(this.events, this.logger, stored.map(logEntryPublication));
        this.expiry.expect(stored);
      } catch (error) {
        for (const waiter of batch) waiter.reject(error);
      }
    }
    this.queues.delete(conversationId);
  }

  /**
   * Runs the batch's transaction; should it fail for a reason other than the database being
   * unreachable, runs its members one by one, in order, so that a message that breaks the
   * transaction fails alone and the others are stored as if it had not been sent.
   */
  private async commitBatch(conversationId: string, batch: Waiter[]): Promise<Outcome[]> {
    try {
      return await this.commitOnce(conversationId, batch);
    } catch (error) {
      // Alone, or with the database gone, one by one would only fail the same way, slower.
      if (batch.length === 1 || isDatabaseUnavailable(error)) throw error;
      this.logger.warn(
        `A batch of ${batch.length} for conversation ${conversationId} failed; retrying one by one: ${messageOf(error)}`,
      );
    }
    const outcomes: Outcome[] = [];
    for (const waiter of batch) {
      try {
        outcomes.push(...(await this.commitOnce(conversationId, [waiter])));
      } catch (error) {
        outcomes.push({ waiter, error });
      }
    }
    return outcomes;
  }

  /**
   * One transaction for `batch`. Every append takes the conversation row lock before looking
   * digests up, so the lookup is authoritative; should a duplicate slip past it anyway (a writer
   * that skipped the lock), the unique index refuses the insert and the batch runs once more,
   * then finding the entry that won.
   */
  private async commitOnce(conversationId: string, batch: Waiter[]): Promise<Outcome[]> {
    try {
      return await pipelinedTransaction(this.dataSource, (sql) =>
        this.write(sql, conversationId, batch),
      );
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      return pipelinedTransaction(this.dataSource, (sql) => this.write(sql, conversationId, batch));
    }
  }

  /**
   * One transaction for the batch, in two waits for the thread: BEGIN, the conversation's row
   * lock, the senders' seats and the bytes already stored go out together (the reads start once
   * the lock is granted, so they see every commit before it); then the insert and COMMIT. What
   * becomes of each waiter, and what it stored.
   */
  private async write(
    sql: PipelinedTransaction,
    conversationId: string,
    batch: Waiter[],
  ): Promise<Outcome[]> {
    const [conversation, owners, known] = await Promise.all([
      conversationHead(sql, conversationId, { lock: true }),
      ownersOfSeats(sql, conversationId, batch),
      this.entriesWithDigests(sql, conversationId, batch),
    ]);
    if (conversation === null) {
      return batch.map((waiter) => ({ waiter, error: notFound('Conversation') }));
    }
    const outcomes: Outcome[] = [];
    const valid: Waiter[] = [];
    // A member replaying bytes gets the entry that holds them, whatever its epoch now is: the
    // answer to the same bytes stays the same for as long as the entry is kept.
    for (const waiter of batch) {
      const refusal = refusalOf(owners, conversation.groupId, waiter);
      if (refusal === null) valid.push(waiter);
      else if (refusal === NOT_SEATED) outcomes.push({ waiter, notSeated: true });
      else outcomes.push({ waiter, error: refusal });
    }
    const epoch = BigInt(conversation.epoch);
    const oldest = epoch - BigInt(this.config.messageEpochWindow);
    // The timer in force moves with the TIMER entries of the batch, message by message.
    let timer = conversation.messageTimerSeconds;
    const appended: { waiter: Waiter; entry: NewLogEntry }[] = [];
    const firstOfBatch = new Set<string>();
    const duplicates: Waiter[] = [];
    for (const waiter of valid) {
      const key = waiter.digest.toString('hex');
      const existing = known.get(key);
      if (existing !== undefined) {
        // Already in the log: shared, not stored.
        outcomes.push({ waiter, entry: existing, stored: false });
        continue;
      }
      if (firstOfBatch.has(key)) {
        // Stored by an earlier message of this batch: it gets that entry once it exists.
        duplicates.push(waiter);
        continue;
      }
      const outOfWindow = epochRefusal(epoch, oldest, waiter.epoch);
      if (outOfWindow !== null) {
        outcomes.push({ waiter, error: outOfWindow });
        continue;
      }
      firstOfBatch.add(key);
      if (waiter.timerSeconds !== undefined) timer = waiter.timerSeconds;
      appended.push({
        waiter,
        entry: {
          kind: waiter.timerSeconds === undefined ? 'APPLICATION' : 'TIMER',
          epoch: waiter.epoch,
          senderDeviceId: waiter.deviceId,
          data: waiter.data,
          digest: waiter.digest,
          ...(waiter.timerSeconds === undefined
            ? { expiresInSeconds: timer }
            : { timerSeconds: waiter.timerSeconds }),
        },
      });
    }
    // COMMIT goes out right behind the insert; a failed insert makes it a rollback.
    const [stored] = await Promise.all([
      appendToLog(
        sql,
        conversation,
        appended.map(({ entry }) => entry),
      ),
      sql.commit(),
    ]);
    appended.forEach(({ waiter }, i) => {
      const entry = stored[i];
      if (entry === undefined) throw new Error('An appended message lost its entry');
      known.set(waiter.digest.toString('hex'), entry);
      outcomes.push({ waiter, entry, stored: true });
    });
    for (const waiter of duplicates) {
      const entry = known.get(waiter.digest.toString('hex'));
      if (entry !== undefined) outcomes.push({ waiter, entry, stored: false });
    }
    return outcomes;
  }

  /**
   * The entries of the conversation that already hold any of the batch's bytes, by digest: in
   * the log, or deleted by retention while their epoch is still in the window (then rebuilt from
   * what retention kept, with the bytes being sent — the same bytes). One statement, one index
   * lookup per table, whatever the batch size.
   */
  private async entriesWithDigests(
    sql: Sql,
    conversationId: string,
    batch: Waiter[],
  ): Promise<Map<string, LogEntryEntity>> {
    const known = new Map<string, LogEntryEntity>();
    const digests = new Map(batch.map((waiter) => [waiter.digest.toString('hex'), waiter]));
    if (digests.size === 0) return known;
    const list = [...digests.values()].map((_, i) => `$${i + 2}`).join(', ');
    // int8 columns: strings from pg, numbers from PGlite.
    const rows: {
      seq: string | number;
      epoch: string | number;
      sender_device_id: string;
      created_at: Date;
      digest: Buffer;
      data: Buffer | null;
      kind: LogEntryKind | null;
      expires_at: Date | null;
      timer_seconds: number | null;
    }[] = await sql.query(
      `SELECT "seq", "epoch", "sender_device_id", "created_at", "digest", "data", "kind", "expires_at", "timer_seconds"
         FROM "log_entries"
        WHERE "conversation_id" = $1 AND "digest" IN (${list})
       UNION ALL
       SELECT "seq", "epoch", "sender_device_id", "created_at", "digest", NULL, NULL, NULL, NULL
         FROM "log_entry_digests"
        WHERE "conversation_id" = $1 AND "digest" IN (${list})`,
      [conversationId, ...[...digests.values()].map((waiter) => waiter.digest)],
    );
    for (const row of rows) {
      const key = row.digest.toString('hex');
      const waiter = digests.get(key);
      if (waiter === undefined) continue;
      known.set(
        key,
        // Deleted entries (retention, timer) are rebuilt from what was kept and what is sent.
        Object.assign(new LogEntryEntity(), {
          conversationId,
          seq: String(row.seq),
          kind: row.kind ?? (waiter.timerSeconds === undefined ? 'APPLICATION' : 'TIMER'),
          epoch: String(row.epoch),
          senderDeviceId: row.sender_device_id,
          createdAt: row.created_at,
          data: row.data ?? waiter.data,
          digest: row.digest,
          expiresAt: row.expires_at,
          timerSeconds: row.timer_seconds ?? waiter.timerSeconds ?? null,
        }),
      );
    }
    return known;
  }

  /** The precise reason a device may not post: not the caller's, gone, or not on the roster. */
  private async whyNotMember(message: PendingMessage): Promise<unknown> {
    try {
      await this.devices.owned(this.dataSource.manager, message.userId, message.deviceId);
      return notAMember();
    } catch (error) {
      return error;
    }
  }
}

/** A sender without a seat on the roster; {@link MessageAppender} looks up why. */
const NOT_SEATED = Symbol('not seated');

/**
 * The owners of the senders' seats on the roster, by device: one query for all, whatever the
 * group size.
 */
async function ownersOfSeats(
  sql: Sql,
  conversationId: string,
  messages: PendingMessage[],
): Promise<Map<string, string>> {
  const seats = await sql.query<{ device_id: string; user_id: string }[]>(
    `SELECT m."device_id", d."user_id" FROM "conversation_members" m
       JOIN "devices" d ON d."id" = m."device_id"
      WHERE m."conversation_id" = $1 AND m."device_id" = ANY($2::text[]) AND NOT m."leaving"`,
    [conversationId, [...new Set(messages.map((message) => message.deviceId))]],
  );
  return new Map(seats.map((row) => [row.device_id, row.user_id]));
}

/**
 * Why a message's sender may not post it, or null when it may: its device holds no seat
 * ({@link NOT_SEATED}), the seat is another user's, or the message is for another group.
 */
function refusalOf(
  owners: ReadonlyMap<string, string>,
  groupId: Buffer,
  message: PendingMessage,
): DomainError | typeof NOT_SEATED | null {
  const owner = owners.get(message.deviceId);
  if (owner === undefined) return NOT_SEATED;
  if (owner !== message.userId) return notAMember();
  if (!groupId.equals(message.groupId)) {
    return invalidMessage('WRONG_GROUP', 'The message is for another group');
  }
  return null;
}

/** What a batch needs of its conversation, read under the row lock that orders appends. */
interface ConversationHead {
  id: string;
  groupId: Buffer;
  epoch: string;
  lastSeq: string;
  messageTimerSeconds: number;
}

/**
 * The conversation row, locked FOR UPDATE when asked, in one raw statement: TypeORM's findOne
 * (query builder, entity hydration) cost more than the rest of a small batch's transaction.
 */
async function conversationHead(
  sql: Sql,
  conversationId: string,
  { lock }: { lock: boolean },
): Promise<ConversationHead | null> {
  // int8 columns: strings from pg, numbers from PGlite.
  const rows = await sql.query<
    {
      id: string;
      group_id: Uint8Array;
      epoch: string | number;
      last_seq: string | number;
      message_timer_seconds: number;
    }[]
  >(
    `SELECT "id", "group_id", "epoch", "last_seq", "message_timer_seconds"
       FROM "conversations" WHERE "id" = $1${lock ? ' FOR UPDATE' : ''}`,
    [conversationId],
  );
  const [row] = rows;
  if (row === undefined) return null;
  return {
    id: row.id,
    groupId: Buffer.isBuffer(row.group_id) ? row.group_id : Buffer.from(row.group_id),
    epoch: String(row.epoch),
    lastSeq: String(row.last_seq),
    messageTimerSeconds: row.message_timer_seconds,
  };
}

/** Why a message of `epoch` is refused when the conversation is at `current`, or null. */
function epochRefusal(current: bigint, oldest: bigint, epoch: bigint): DomainError | null {
  if (epoch <= current && epoch >= oldest) return null;
  return invalidMessage(
    'EPOCH_OUT_OF_WINDOW',
    `Messages must be for epochs ${oldest} to ${current}; this one is for ${epoch}`,
  );
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
