import type { OutgoingEvent } from './event-bus.js';
import { EventsUnavailableError } from './events.errors.js';

/** Options of {@link PublishQueue}. */
export interface PublishQueueOptions {
  /** Events waiting in the whole process before new ones are dropped; default 10,000. */
  maxQueued?: number;
  /** How long one publish may take before it counts as failed; default 1000 ms. */
  timeoutMs?: number;
}

/** What the queue needs from its bus. */
export interface PublishPort {
  /** Sends one event (the bus's publish, metered or not). */
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
 * returns at once, so no request ever waits on the bus. Events of one channel go out one at a
 * time in enqueue order (what subscribers rely on within one instance); channels proceed
 * independently. A publish that takes longer than the timeout is given up on and the next one
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
    void this.drain(channel, fresh);
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
    for (let event = waiting.shift(); event !== undefined; event = waiting.shift()) {
      try {
        if (!this.port.available()) {
          // Waiting on a bus known to be down only delays the rest; subscribers are told anyway.
          throw new EventsUnavailableError('The event bus is down; event dropped');
        }
        await this.withTimeout(this.port.send(channel, event));
      } catch (error) {
        this.lose(channel, error instanceof Error ? error : new Error(String(error)));
      } finally {
        this.queued -= 1;
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
