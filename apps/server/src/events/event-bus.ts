import { EventStream, type OpenStreamOptions } from './event-stream.js';
import { EventsUnavailableError } from './events.errors.js';

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
        subscribe: (channel, onEvent) => this.subscribe(channel, onEvent),
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

  /** Whether close() has been called. */
  protected get isClosing(): boolean {
    return this.closing !== null;
  }

  /** Ends every open stream with this error, e.g. when the backend may have lost events. */
  protected interruptStreams(error: Error): void {
    for (const stream of [...this.streams]) stream.fail(error);
  }

  private async closeOnce(): Promise<void> {
    // Clients reconnect (to another instance) and resume from their cursor.
    this.interruptStreams(new EventsUnavailableError('The event bus is shutting down'));
    await this.shutdown();
  }
}
