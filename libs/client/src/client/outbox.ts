import { toBase64 } from '@parley/protocol';
import {
  encodeEnvelope,
  type EnvelopeMetadataFields,
  metadataEnvelope,
} from '../content/envelope.js';
import {
  BadInputError,
  closedError,
  InvalidMessageError,
  isRetryable,
  NotAMemberError,
  NotFoundError,
  ParleyError,
  RateLimitedError,
} from '../errors.js';
import { SendMessageDocument } from '../graphql/generated.js';
import type { GraphqlTransport } from '../transport/graphql-transport.js';
import type { OutboxRecord } from './client-state.js';

/** One outgoing message and where it stands; reported on every change through `onOutbox`. */
export interface OutgoingMessage {
  conversationId: string;
  /** The message's id (the envelope's, as receivers see it). */
  id: string;
  text: string;
  /** pending: stored, not yet accepted; sent: in the log at `seq`; failed: refused for good. */
  state: 'pending' | 'sent' | 'failed';
  seq: number | null;
  error: ParleyError | null;
  createdAt: Date;
}

/** What the outbox needs of the conversation a message belongs to. */
export interface OutboxConversation {
  /** Why the conversation takes no messages (removed, left), or null. */
  refusal(): ParleyError | null;
  /** Encrypts in the conversation's queue, in its current epoch. */
  encryptOutgoing(plaintext: Uint8Array): Promise<Uint8Array>;
  /** Processes the log up to now (to reach the current epoch). */
  catchUp(): Promise<number>;
  /** Records that the server no longer counts this device a member. */
  markRemoved(): Promise<void>;
}

/** What the outbox needs of its client. */
export interface OutboxHost {
  readonly transport: GraphqlTransport;
  deviceId(): string;
  /** The client state's outbox: the outbox changes it in place, then saves. */
  records(): OutboxRecord[];
  conversation(id: string): OutboxConversation | undefined;
  /** Saves the client state (with the engine's), in order with every other save. */
  save(): Promise<void>;
  report(error: unknown): void;
}

// A message refused because its epoch left the server's window is encrypted again at most this
// many times in a row (each time after catching up): more means something else is wrong.
const MAX_REENCRYPTIONS = 3;
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 30_000;

interface Waiter {
  resolve(result: { seq: number; id: string }): void;
  reject(error: unknown): void;
}

/**
 * The durable outbox. A message handed to `send` is saved as pending before anything goes on
 * the wire, then encrypted (the ciphertext saved with the engine state that made it) and sent;
 * a failure that may pass (network, server unavailable, rate limit) is retried with the same
 * bytes — the server answers identical bytes with the entry that holds them, so a retry after a
 * lost answer stores nothing twice. The bytes are made again only when the server refused them
 * because their epoch left its window. Each conversation's messages go one at a time, in the
 * order they were handed over.
 */
export class Outbox {
  private readonly listeners = new Set<(message: OutgoingMessage) => void>();
  private readonly waiters = new Map<string, Waiter>();
  private readonly promises = new Map<string, Promise<{ seq: number; id: string }>>();
  private readonly pumps = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly sleepers = new Set<() => void>();
  private readonly inFlight = new Set<string>();
  private closed = false;

  constructor(private readonly host: OutboxHost) {}

  /** Calls `listener` on every change of an outgoing message; returns an unsubscriber. */
  onChange(listener: (message: OutgoingMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Stores a message as pending and starts sending its conversation's messages; with `metadata`
   * a metadata envelope (its text empty), in the same order as the texts.
   */
  async add(
    conversationId: string,
    text: string,
    metadata?: EnvelopeMetadataFields,
  ): Promise<{ seq: number; id: string }> {
    if (this.isClosed()) throw closedError();
    const record: OutboxRecord = {
      conversationId,
      id: crypto.randomUUID(),
      text,
      ...(metadata === undefined ? {} : { type: 'metadata' as const, metadata }),
      createdAt: new Date().toISOString(),
      state: 'pending',
      ciphertext: null,
      error: null,
    };
    this.host.records().push(record);
    const result = this.wait(record.id);
    await this.host.save();
    this.emit(record, null);
    this.kick(conversationId);
    return result;
  }

  /** The conversation's pending and failed messages (texts, not metadata), oldest first. */
  list(conversationId: string): OutgoingMessage[] {
    return this.host
      .records()
      .filter((record) => record.conversationId === conversationId && record.type !== 'metadata')
      .map((record) => outgoing(record, null));
  }

  /** Sends a failed (or still pending) message again, after the conversation's other ones. */
  async retry(conversationId: string, id: string): Promise<{ seq: number; id: string }> {
    if (this.isClosed()) throw closedError();
    const record = this.find(conversationId, id);
    const result = this.promiseOf(id);
    if (record.state === 'failed') {
      const records = this.host.records();
      records.splice(records.indexOf(record), 1);
      records.push(record);
      record.state = 'pending';
      record.error = null;
      await this.host.save();
      this.emit(record, null);
    }
    this.kick(conversationId);
    return result;
  }

  /** Drops a failed or pending message (not one on the wire right now). */
  async discard(conversationId: string, id: string): Promise<void> {
    const record = this.find(conversationId, id);
    if (this.inFlight.has(id)) {
      throw new BadInputError('IN_FLIGHT', `Message ${id} is being sent right now`);
    }
    const records = this.host.records();
    records.splice(records.indexOf(record), 1);
    await this.host.save();
    this.settle(id, new ParleyError('DISCARDED', `Message ${id} was discarded`));
  }

  /** Drops every message of a conversation the client forgets. */
  forget(conversationId: string): void {
    const records = this.host.records();
    for (const record of records.filter((r) => r.conversationId === conversationId)) {
      records.splice(records.indexOf(record), 1);
      this.settle(record.id, new ParleyError('DISCARDED', `Message ${record.id} was discarded`));
    }
  }

  /** Starts sending every conversation's pending messages (after connect). */
  resume(): void {
    for (const conversationId of new Set(this.host.records().map((r) => r.conversationId))) {
      this.kick(conversationId);
    }
  }

  /** Ends waits between retries at once (the connection is back). */
  wake(): void {
    for (const wake of [...this.sleepers]) wake();
  }

  /**
   * Stops sending: waiting `send` calls reject with CLOSED; their messages stay pending in the
   * saved state and go after the next connect().
   */
  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    for (const id of [...this.waiters.keys()]) this.settle(id, closedError());
    await Promise.all(this.pumps.values());
  }

  // A method, not the field: the compiler would take the field as unchanged across awaits.
  private isClosed(): boolean {
    return this.closed;
  }

  private kick(conversationId: string): void {
    if (this.isClosed()) return;
    if (this.pumps.has(conversationId)) {
      this.again.add(conversationId);
      return;
    }
    const run = async () => {
      do {
        this.again.delete(conversationId);
        for (;;) {
          if (this.isClosed()) return;
          const next = this.host
            .records()
            .find(
              (record) => record.conversationId === conversationId && record.state === 'pending',
            );
          if (next === undefined) break;
          await this.deliver(next);
        }
      } while (this.again.has(conversationId) && !this.isClosed());
    };
    const pump = run()
      .catch((error: unknown) => {
        this.host.report(error);
      })
      .finally(() => this.pumps.delete(conversationId));
    this.pumps.set(conversationId, pump);
  }

  /** Sends one message until it is in the log or failed for good (or the outbox closes). */
  private async deliver(record: OutboxRecord): Promise<void> {
    let attempt = 0;
    let reencryptions = 0;
    for (;;) {
      // Closed, or discarded (or its conversation forgotten) while it waited for a retry.
      if (this.isClosed() || !this.host.records().includes(record)) return;
      const conversation = this.host.conversation(record.conversationId);
      if (conversation === undefined) {
        await this.fail(
          record,
          new NotFoundError('NOT_FOUND', `Not in conversation ${record.conversationId}`),
        );
        return;
      }
      const refusal = conversation.refusal();
      if (refusal !== null) {
        await this.fail(record, refusal);
        return;
      }
      try {
        if (record.ciphertext === null) {
          const plaintext = encodeEnvelope(
            record.type === 'metadata' && record.metadata !== undefined
              ? metadataEnvelope(record.id, record.createdAt, record.metadata)
              : { v: 1, type: 'text', id: record.id, sentAt: record.createdAt, text: record.text },
          );
          record.ciphertext = await conversation.encryptOutgoing(plaintext);
          // The bytes and the engine state that made them in one save, before the wire: after a
          // crash the same bytes go again, and the engine never reuses their key.
          await this.host.save();
        }
        if (this.isClosed() || !this.host.records().includes(record)) return;
        this.inFlight.add(record.id);
        let seq: number;
        try {
          const { sendMessage } = await this.host.transport.request(SendMessageDocument, {
            input: {
              deviceId: this.host.deviceId(),
              conversationId: record.conversationId,
              message: toBase64(record.ciphertext),
            },
          });
          seq = sendMessage.seq;
        } finally {
          this.inFlight.delete(record.id);
        }
        await this.sent(record, seq);
        return;
      } catch (error) {
        if (this.isClosed()) return;
        if (isEpochOutOfWindow(error) && reencryptions < MAX_REENCRYPTIONS) {
          reencryptions += 1;
          record.ciphertext = null;
          // Reach the server's epoch first, or the new bytes would be as old as the last.
          await conversation.catchUp().catch((failure: unknown) => {
            this.host.report(failure);
          });
          continue;
        }
        if (error instanceof NotAMemberError) {
          await conversation.markRemoved();
          await this.fail(record, conversation.refusal() ?? error);
          return;
        }
        if (isRetryable(error)) {
          attempt += 1;
          await this.sleep(retryDelay(attempt, error));
          continue;
        }
        await this.fail(record, asParleyError(error));
        return;
      }
    }
  }

  private async sent(record: OutboxRecord, seq: number): Promise<void> {
    const records = this.host.records();
    const index = records.indexOf(record);
    if (index >= 0) records.splice(index, 1);
    await this.host.save().catch((error: unknown) => {
      this.host.report(error);
    });
    this.emit({ ...record, state: 'pending' }, seq);
    const waiter = this.waiters.get(record.id);
    this.waiters.delete(record.id);
    waiter?.resolve({ seq, id: record.id });
  }

  private async fail(record: OutboxRecord, error: ParleyError): Promise<void> {
    record.state = 'failed';
    record.error = { code: error.code, message: error.message, details: { ...error.details } };
    await this.host.save().catch((failure: unknown) => {
      this.host.report(failure);
    });
    this.emit(record, null);
    this.settle(record.id, error);
  }

  private emit(record: OutboxRecord, seq: number | null): void {
    // Metadata entries are the SDK's own (setMetadata resolves for them): not messages.
    if (record.type === 'metadata') return;
    const message = outgoing(record, seq);
    for (const listener of this.listeners) {
      try {
        listener(message);
      } catch (error) {
        this.host.report(error);
      }
    }
  }

  private wait(id: string): Promise<{ seq: number; id: string }> {
    const promise = new Promise<{ seq: number; id: string }>((resolve, reject) => {
      this.waiters.set(id, { resolve, reject });
    });
    this.promises.set(id, promise);
    // Nobody may await a message sent after a restart: its rejection must not go unhandled.
    void promise
      .catch(() => undefined)
      .finally(() => {
        if (this.promises.get(id) === promise) this.promises.delete(id);
      });
    return promise;
  }

  private promiseOf(id: string): Promise<{ seq: number; id: string }> {
    const existing = this.waiters.has(id) ? this.promises.get(id) : undefined;
    return existing ?? this.wait(id);
  }

  private settle(id: string, error: unknown): void {
    const waiter = this.waiters.get(id);
    this.waiters.delete(id);
    waiter?.reject(error);
  }

  private find(conversationId: string, id: string): OutboxRecord {
    const record = this.host
      .records()
      .find((r) => r.conversationId === conversationId && r.id === id);
    if (record === undefined) {
      throw new NotFoundError('NOT_FOUND', `No outgoing message ${id} in this conversation`);
    }
    return record;
  }

  /** Waits `ms`, or less if woken (connection back, client closing). */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }
}

/** The public view of a record. */
function outgoing(record: OutboxRecord, seq: number | null): OutgoingMessage {
  return {
    conversationId: record.conversationId,
    id: record.id,
    text: record.text,
    state: seq === null ? record.state : 'sent',
    seq,
    error:
      record.error === null
        ? null
        : new ParleyError(record.error.code, record.error.message, record.error.details),
    createdAt: new Date(record.createdAt),
  };
}

/** The server refused the bytes because their epoch is outside its window (not the message). */
export function isEpochOutOfWindow(error: unknown): boolean {
  return error instanceof InvalidMessageError && error.details.reason === 'EPOCH_OUT_OF_WINDOW';
}

/** Exponential backoff with jitter (half to all of the step), at least what a rate limit asks. */
export function retryDelay(attempt: number, error?: unknown): number {
  const step = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, attempt - 1));
  const jittered = step / 2 + Math.random() * (step / 2);
  const asked = error instanceof RateLimitedError ? error.retryAfterSeconds * 1000 : 0;
  return Math.max(jittered, asked);
}

function asParleyError(error: unknown): ParleyError {
  if (error instanceof ParleyError) return error;
  return new ParleyError('SEND_FAILED', error instanceof Error ? error.message : String(error));
}
