import { Logger } from '@nestjs/common';
import { EventStream, type OpenStreamOptions } from './event-stream.js';
import { EventsUnavailableError } from './events.errors.js';
import { PublishQueue, type PublishQueueOptions, unbatched } from './publish-queue.js';

/** How the bus is doing, as /health reports it. */
export interface BusStatus {
  /** `down`: the backend is unreachable or not answering; `degraded`: events were lost lately. */
  state: 'up' | 'degraded' | 'down';
  backend: 'in-process' | 'redis';
  /** Events waiting in this process's outbox. */
  queued: number;
  /** Events this process could not publish since it started. */
  lost: number;
}

// Events lost this recently make the bus "degraded" even once the backend answers again.
const DEGRADED_FOR_MS = 30_000;
// How long shutdown waits for the outbox to empty before dropping what is left.
const FLUSH_TIMEOUT_MS = 2000;
// One warning per this many milliseconds about lost events, not one per event.
const LOST_LOG_INTERVAL_MS = 10_000;

/**
 * An event as it crosses the bus: a JSON object with a string `type`. Publishers define the
 * concrete union; Dates survive only under keys ending in `At`, everything else arrives as
 * JSON.parse gives it. Events are shared between streams, hence read-only.
 */
export interface BusEvent {
  readonly type: string;
  readonly [key: string]: unknown;
}

/**
 * What publish() accepts: any object type with a string `type`, interfaces included (which a
 * type with an index signature, like BusEvent, would reject). Checked at runtime as well.
 */
export interface OutgoingEvent {
  readonly type: string;
}

/** One event as a stream yields it, with the channel it was published to. */
export interface BusMessage {
  readonly channel: string;
  readonly event: BusEvent;
}

/**
 * Pub/sub between the process that stores something and whichever processes hold the
 * interested sockets. Also the Nest injection token (EventsModule picks the implementation).
 *
 * Delivery is live only and at most once; the conversation log is the source of truth. A
 * stream either yields every event published to its channels after they went live, in publish
 * order per channel and publisher, or it ends with an EventStreamError.
 */
export abstract class EventBus {
  private readonly streams = new Set<EventStream>();
  private closing: Promise<void> | null = null;
  private shut = false;
  private readonly outbox: PublishQueue;
  private readonly busLogger = new Logger('EventBus');
  private lastLossAt = -Infinity;
  private lastLossLogAt = -Infinity;
  private unloggedLosses = 0;

  /** Which backend this is, for /health. */
  abstract readonly backend: BusStatus['backend'];

  constructor(outbox: PublishQueueOptions = {}) {
    this.outbox = new PublishQueue(
      {
        // Through `this.publish` as it is when called, so that a wrapper (metrics) sees each one.
        send: (channel, event) => this.publish(channel, event),
        available: () => this.backendAvailable && !this.shut,
        lost: (channel, error) => {
          this.onLost(channel, error);
        },
      },
      outbox,
    );
  }

  /**
   * Queues an event for `channel` and returns at once: what a writer calls after its transaction
   * committed, so that no request waits on the bus. Events of one channel go out in the order
   * queued; if one cannot go out (bus down, slow or full), this process's live streams end with
   * EventsUnavailableError and their clients catch up from the log. False when dropped at once.
   */
  enqueue(channel: string, event: OutgoingEvent): boolean {
    return this.outbox.enqueue(channel, event);
  }

  /** The bus's state for /health: down, degraded (events lost lately) or up. */
  status(): BusStatus {
    const { queued, lost } = this.outbox.stats;
    const state =
      !this.backendAvailable || this.shut
        ? 'down'
        : performance.now() - this.lastLossAt < DEGRADED_FOR_MS
          ? 'degraded'
          : 'up';
    return { state, backend: this.backend, queued, lost };
  }

  /** Resolves once this process's outbox is empty (tests, shutdown). */
  flushed(): Promise<void> {
    return this.outbox.idle();
  }

  /** Whether the backend is believed to deliver; while not, queued events are dropped at once. */
  protected get backendAvailable(): boolean {
    return true;
  }

  /**
   * Sends an event to everyone following `channel`, on every instance. Resolves once the
   * backend took it; rejects with a TypeError for a non-JSON event, EventsUnavailableError
   * when the backend is down or the bus closed.
   */
  // Generic on purpose: an object literal passed as a plain OutgoingEvent would be refused
  // for its extra properties, which is every property but `type`.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  abstract publish<E extends OutgoingEvent>(channel: string, event: E): Promise<void>;

  /** Subscribes one channel for one stream; resolves once the backend delivers it. */
  protected abstract subscribe(
    channel: string,
    onEvent: (event: BusEvent) => void,
  ): Promise<() => void>;

  /** Releases the backend (connections, listeners) after every stream has ended. */
  protected abstract shutdown(): Promise<void>;

  /**
   * Opens a stream over `channels`; add or remove channels while it is open, and await
   * `stream.ready()` before reading the log so that nothing falls between the two.
   */
  open(channels: Iterable<string>, options: OpenStreamOptions = {}): EventStream {
    const stream = new EventStream(
      {
        // Batches of the outbox (one bus message) reach streams as the events they carry.
        subscribe: (channel, onEvent) => this.subscribe(channel, unbatched(onEvent)),
        ended: (ended) => this.streams.delete(ended),
      },
      options,
    );
    if (this.closing !== null) {
      stream.fail(new EventsUnavailableError('The event bus is shut down'));
      return stream;
    }
    this.streams.add(stream);
    // add() never leaves a rejection unhandled; a failure ends the stream, which is how the
    // consumer hears of it.
    for (const channel of channels) void stream.add(channel);
    return stream;
  }

  /** How many streams are open on this bus (for metrics and leak checks). */
  get openStreams(): number {
    return this.streams.size;
  }

  /** Ends every open stream with EventsUnavailableError and releases the backend; idempotent. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  /** Whether the bus is shut down (after close() flushed the outbox): publishing fails. */
  protected get isClosing(): boolean {
    return this.shut;
  }

  /** Called when the bus failed to publish an event; a backend may react (Redis: counts as down). */
  protected publishLost(): void {
    // Nothing to do for a backend that cannot hang.
  }

  /** Ends every open stream with this error, e.g. when the backend may have lost events. */
  protected interruptStreams(error: Error): void {
    for (const stream of [...this.streams]) stream.fail(error);
  }

  private async closeOnce(): Promise<void> {
    // Clients reconnect (to another instance) and resume from their cursor.
    this.interruptStreams(new EventsUnavailableError('The event bus is shutting down'));
    // What was committed before shutdown still goes out, if the backend lets it, for a while.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.outbox.idle(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, FLUSH_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    this.shut = true;
    await this.shutdown();
  }

  /**
   * An event did not go out. Subscribers anywhere may have missed it, and a live stream only
   * notices a missing entry when a later one of its conversation arrives: so this process's
   * streams end now (EVENTS_UNAVAILABLE), and their clients catch up from the log.
   */
  private onLost(channel: string, error: Error): void {
    const now = performance.now();
    this.lastLossAt = now;
    if (!(error instanceof EventsUnavailableError)) {
      // Not the bus: an event that cannot be encoded is a bug of its publisher.
      this.busLogger.error(`Could not publish to ${channel}: ${error.message}`);
      return;
    }
    this.publishLost();
    this.interruptStreams(
      new EventsUnavailableError('Live events could not be published; resume from the log', {
        cause: error,
      }),
    );
    this.unloggedLosses += 1;
    if (now - this.lastLossLogAt >= LOST_LOG_INTERVAL_MS) {
      this.busLogger.warn(
        `${this.unloggedLosses} event(s) not published (last to ${channel}): ${error.message}`,
      );
      this.unloggedLosses = 0;
      this.lastLossLogAt = now;
    }
  }
}
