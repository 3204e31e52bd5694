import type { BusEvent, OutgoingEvent } from './event-bus.js';
import { isBusEvent } from './event-codec.js';
import { EventsUnavailableError } from './events.errors.js';

/**
 * The `type` of one bus message that carries several events of one channel, in order: what the
 * outbox sends when more than one waits, so that a batch the appender stored (up to 256 messages)
 * costs one Redis PUBLISH and one message to parse on every instance, not one each. Streams never
 * see it: {@link unbatched} hands its events on one by one.
 */
export const EVENT_BATCH_TYPE = 'bus:batch';

/** Several events of one channel as one bus message, in publish order. */
export interface EventBatch {
  readonly type: typeof EVENT_BATCH_TYPE;
  readonly events: readonly OutgoingEvent[];
}

/** Wraps a bus listener so that the events of a batch reach it one by one, in order. */
export function unbatched(onEvent: (event: BusEvent) => void): (event: BusEvent) => void {
  return (event) => {
    if (event.type !== EVENT_BATCH_TYPE) {
      onEvent(event);
      return;
    }
    const { events } = event;
    if (!Array.isArray(events)) return;
    for (const inner of events as unknown[]) {
      // A batch holds events only; a nested batch is no publisher's and is dropped.
      if (isBusEvent(inner) && inner.type !== EVENT_BATCH_TYPE) onEvent(inner);
    }
  };
}

// Events per bus message: a whole appender batch, and bounded so one message stays a few
// hundred KiB (1 KiB messages, base64).
const MAX_EVENTS_PER_MESSAGE = 256;

/** Options of {@link PublishQueue}. */
export interface PublishQueueOptions {
  /** Events waiting in the whole process before new ones are dropped; default 10,000. */
  maxQueued?: number;
  /** How long one publish may take before it counts as failed; default 1000 ms. */
  timeoutMs?: number;
}

/** What the queue needs from its bus. */
export interface PublishPort {
  /** Sends one event, or one {@link EventBatch} (the bus's publish, metered or not). */
  send(channel: string, event: OutgoingEvent): Promise<void>;
  /** Whether the backend is believed up; while it is not, events are dropped at once. */
  available(): boolean;
  /** An event did not go out (failed, timed out, or dropped): subscribers may have missed it. */
  lost(channel: string, error: Error): void;
}

/** The queue's figures, for /health and metrics. */
export interface PublishQueueStats {
  queued: number;
  /** Events that did not go out since the process started. */
  lost: number;
}

export const DEFAULT_MAX_QUEUED = 10_000;
export const DEFAULT_PUBLISH_TIMEOUT_MS = 1000;

/**
 * The bounded, ordered per-process outbox between writers and the bus: a writer enqueues and
 * returns at once, so no request ever waits on the bus. Events of one channel go out in enqueue
 * order (what subscribers rely on within one instance), one bus message at a time: whatever
 * waits for the channel when the previous message was taken — everything a writer enqueued in
 * one go, at least — leaves as one {@link EventBatch}; channels proceed independently. A publish that takes longer than the timeout is given up on and the next one
 * of its channel goes; while the bus is known to be down, events are dropped without waiting,
 * and when the outbox is full new ones are dropped — in both cases the port is told, and live
 * subscribers are then sent back to the log, which holds everything.
 */
export class PublishQueue {
  private readonly channels = new Map<string, OutgoingEvent[]>();
  private readonly maxQueued: number;
  private readonly timeoutMs: number;
  private queued = 0;
  private lostCount = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly port: PublishPort,
    options: PublishQueueOptions = {},
  ) {
    this.maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
    if (!Number.isSafeInteger(this.maxQueued) || this.maxQueued < 1) {
      throw new RangeError(`maxQueued must be a positive integer, got ${this.maxQueued}`);
    }
    if (!(this.timeoutMs > 0)) {
      throw new RangeError(`timeoutMs must be positive, got ${this.timeoutMs}`);
    }
  }

  /** Queues an event for its channel; false when it was dropped (bus down or queue full). */
  enqueue(channel: string, event: OutgoingEvent): boolean {
    if (!this.port.available()) {
      this.lose(channel, new EventsUnavailableError('The event bus is down; event dropped'));
      return false;
    }
    if (this.queued >= this.maxQueued) {
      this.lose(
        channel,
        new EventsUnavailableError(`${this.maxQueued} events are waiting; event dropped`),
      );
      return false;
    }
    this.queued += 1;
    const waiting = this.channels.get(channel);
    if (waiting !== undefined) {
      waiting.push(event);
      return true;
    }
    const fresh = [event];
    this.channels.set(channel, fresh);
    // After the writer's synchronous loop, so that everything it enqueues now leaves together.
    queueMicrotask(() => {
      void this.drain(channel, fresh);
    });
    return true;
  }

  /** Counts of what waits and what was lost. */
  get stats(): PublishQueueStats {
    return { queued: this.queued, lost: this.lostCount };
  }

  /** Resolves once nothing waits (or at once if nothing does). */
  idle(): Promise<void> {
    if (this.queued === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async drain(channel: string, waiting: OutgoingEvent[]): Promise<void> {
    while (waiting.length > 0) {
      const events = waiting.splice(0, MAX_EVENTS_PER_MESSAGE);
      const [first] = events;
      try {
        if (!this.port.available()) {
          // Waiting on a bus known to be down only delays the rest; subscribers are told anyway.
          throw new EventsUnavailableError('The event bus is down; event dropped');
        }
        const batch: EventBatch = { type: EVENT_BATCH_TYPE, events };
        const message: OutgoingEvent = events.length === 1 && first !== undefined ? first : batch;
        await this.withTimeout(this.port.send(channel, message));
      } catch (error) {
        const lost = error instanceof Error ? error : new Error(String(error));
        for (let i = 0; i < events.length; i += 1) this.lose(channel, lost);
      } finally {
        this.queued -= events.length;
      }
    }
    this.channels.delete(channel);
    if (this.queued === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private async withTimeout(sending: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new EventsUnavailableError(`A publish took more than ${this.timeoutMs} ms`));
      }, this.timeoutMs);
    });
    // A late settlement of a publish given up on must not surface as an unhandled rejection.
    sending.catch(() => undefined);
    try {
      await Promise.race([sending, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private lose(channel: string, error: Error): void {
    this.lostCount += 1;
    this.port.lost(channel, error);
  }
}
