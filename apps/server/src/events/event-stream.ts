import type { BusEvent, BusMessage } from './event-bus.js';
import { EventsUnavailableError, SlowConsumerError } from './events.errors.js';

/**
 * Events a stream holds for a slow consumer before it gives up (see SlowConsumerError), when it
 * is not given a lag instead.
 */
export const DEFAULT_MAX_BUFFERED = 1000;

/** Options of {@link EventBus.open}. */
export interface OpenStreamOptions {
  /**
   * Events held for a consumer that does not keep up; one more ends the stream. Without it, the
   * default when no `maxLagMs` is given, otherwise no count at all.
   */
  maxBuffered?: number;
  /**
   * How old, in milliseconds, the oldest event held for the consumer may grow: an event arriving
   * when it is older ends the stream. A lag in time rather than a count, so that a consumer that
   * keeps up with a busy stream is not cut for the stream's rate, and a stuck one is cut however
   * quiet the stream.
   */
  maxLagMs?: number;
}

/** A held event, with when it arrived (performance.now()). */
interface Held extends BusMessage {
  readonly at: number;
}

/** Cancels one subscription; called at most once. */
export type Unsubscribe = () => void;

/**
 * What a stream needs from its bus (implemented by EventBus, not by callers): a subscription
 * per channel whose promise settles once the backend delivers, and a note when the stream ends.
 */
export interface StreamPort {
  subscribe(channel: string, onEvent: (event: BusEvent) => void): Promise<Unsubscribe>;
  ended(stream: EventStream): void;
}

interface Subscription {
  readonly channel: string;
  /** Settles when the backend delivers this channel (rejects if it could not subscribe). */
  live: Promise<void>;
  /** Null until the backend confirmed, and again once cancelled. */
  unsubscribe: Unsubscribe | null;
  /** False once removed or once the stream ended: late deliveries are then dropped. */
  active: boolean;
}

interface Waiter {
  resolve(result: IteratorResult<BusMessage, undefined>): void;
  reject(error: Error): void;
}

const noop = (): void => undefined;

/**
 * Takes an event in the publisher's call, or declines it (false): see
 * {@link EventStream.takeDirectly}. Two arguments, not a message object: it runs once per
 * subscriber per event.
 */
export type DirectTake = (event: BusEvent, channel: string) => boolean;

/**
 * The live events of a changing set of channels for one consumer, created by
 * {@link EventBus.open}. Events of one channel come in publish order; nothing is replayed.
 */
export class EventStream implements AsyncIterableIterator<BusMessage, undefined> {
  private readonly subscriptions = new Map<string, Subscription>();
  private buffer: Held[] = [];
  private waiters: Waiter[] = [];
  private ended = false;
  /** The error the stream ended with, until the consumer has been given it. */
  private pendingError: Error | null = null;
  private failure: Error | null = null;
  private readonly maxBuffered: number;
  private readonly maxLagMs: number;
  /** Settles when the stream ends; made on first ask. */
  private endedSignal: { promise: Promise<void>; resolve: () => void } | null = null;
  /** Takes an event in the publisher's call, or declines it (see {@link takeDirectly}). */
  private direct: DirectTake | null = null;

  constructor(
    private readonly port: StreamPort,
    options: OpenStreamOptions = {},
  ) {
    const maxLagMs = options.maxLagMs ?? Infinity;
    if (!(maxLagMs > 0)) throw new RangeError(`maxLagMs must be positive, got ${maxLagMs}`);
    const maxBuffered =
      options.maxBuffered ?? (options.maxLagMs === undefined ? DEFAULT_MAX_BUFFERED : Infinity);
    if (maxBuffered !== Infinity && (!Number.isSafeInteger(maxBuffered) || maxBuffered < 1)) {
      throw new RangeError(`maxBuffered must be a positive integer, got ${maxBuffered}`);
    }
    this.maxBuffered = maxBuffered;
    this.maxLagMs = maxLagMs;
  }

  /** The channels the stream currently follows (live or being subscribed). */
  get channels(): string[] {
    return [...this.subscriptions.keys()];
  }

  /** Whether the stream has ended (closed, failed, or shut down with its bus). */
  get closed(): boolean {
    return this.ended;
  }

  /**
   * Follows one more channel; a no-op if already followed or the stream has ended. Resolves
   * once the channel is live, so a caller that then reads the log misses nothing; rejects
   * (and ends the stream with the same error) if the backend cannot subscribe.
   */
  add(channel: string): Promise<void> {
    if (channel === '') throw new TypeError('A channel name must not be empty');
    if (this.ended) return Promise.resolve();
    const existing = this.subscriptions.get(channel);
    if (existing !== undefined) return existing.live;
    const subscription: Subscription = {
      channel,
      live: Promise.resolve(),
      unsubscribe: null,
      active: true,
    };
    this.subscriptions.set(channel, subscription);
    let subscribed: Promise<Unsubscribe>;
    try {
      subscribed = this.port.subscribe(channel, (event) => {
        this.deliver(subscription, event);
      });
    } catch (error) {
      subscribed = Promise.reject(toError(error));
    }
    subscription.live = subscribed.then(
      (unsubscribe) => {
        // Removed (or ended) while the backend was still subscribing: undo it now.
        if (subscription.active) subscription.unsubscribe = unsubscribe;
        else unsubscribe();
      },
      (error: unknown) => {
        const failure = new EventsUnavailableError(`Could not subscribe to ${channel}`, {
          cause: error,
        });
        if (subscription.active) this.fail(failure);
        throw failure;
      },
    );
    // The failure also reaches the consumer through next(); a caller may ignore this promise.
    subscription.live.catch(noop);
    return subscription.live;
  }

  /**
   * Stops following a channel; idempotent. Once it returns, no event of that channel is
   * yielded any more, including those already buffered.
   */
  remove(channel: string): void {
    const subscription = this.subscriptions.get(channel);
    if (subscription === undefined) return;
    this.subscriptions.delete(channel);
    this.cancel(subscription);
    if (this.buffer.some((message) => message.channel === channel)) {
      this.buffer = this.buffer.filter((message) => message.channel !== channel);
    }
  }

  /** Whether the stream follows this channel. */
  has(channel: string): boolean {
    return this.subscriptions.has(channel);
  }

  /**
   * Resolves once every channel followed so far is live; rejects with the error the stream
   * ended with, if any.
   */
  async ready(): Promise<void> {
    await Promise.all([...this.subscriptions.values()].map((subscription) => subscription.live));
    if (this.failure !== null) throw this.failure;
  }

  /**
   * Resolves once the stream has ended (closed, or failed: then `next()` has the error), for a
   * consumer that stopped reading a while and must still hear of it at once.
   */
  whenEnded(): Promise<void> {
    if (this.ended) return Promise.resolve();
    if (this.endedSignal === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((settle) => {
        resolve = settle;
      });
      this.endedSignal = { promise, resolve };
    }
    return this.endedSignal.promise;
  }

  /** The next event; rejects once with the error the stream ended with, then is done. */
  next(): Promise<IteratorResult<BusMessage, undefined>> {
    const held = this.buffer.shift();
    if (held !== undefined) {
      return Promise.resolve({ value: { channel: held.channel, event: held.event }, done: false });
    }
    if (this.pendingError !== null) {
      const error = this.pendingError;
      this.pendingError = null;
      return Promise.reject(error);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
    });
  }

  /**
   * Every event held now, in order, up to `max` (waiting for one when none is): what a consumer
   * that fell behind a burst takes in one step rather than one promise per event. Rejects and
   * ends as {@link next} does.
   */
  async nextBatch(max = Infinity): Promise<IteratorResult<readonly BusMessage[], undefined>> {
    if (this.buffer.length > 0) {
      const taken = this.buffer.length <= max ? this.buffer : this.buffer.slice(0, max);
      this.buffer = taken === this.buffer ? [] : this.buffer.slice(max);
      return { value: taken, done: false };
    }
    const next = await this.next();
    return next.done === true ? next : { value: [next.value], done: false };
  }

  /**
   * Hands events to `take` in the publisher's own call, while the consumer is waiting for the
   * next one and nothing is held ahead of it; `take` returns false to decline one, which then
   * comes through {@link next} as any other. The consumer's wait goes on: what `take` accepted
   * is not in it. One synchronous path for a caught-up consumer, instead of a promise per event.
   */
  takeDirectly(take: DirectTake): void {
    this.direct = take;
  }

  /** Closes the stream (what `for await … break` and graphql-ws call). */
  return(): Promise<IteratorResult<BusMessage, undefined>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Unsubscribes every channel and drops what is buffered; idempotent. */
  close(): void {
    this.end(null);
  }

  /** Ends the stream with an error, which the consumer's next `next()` rejects with. */
  fail(error: Error): void {
    this.end(error);
  }

  /** The stream is its own iterator. */
  [Symbol.asyncIterator](): this {
    return this;
  }

  private deliver(subscription: Subscription, event: BusEvent): void {
    // A message the backend had in flight when the channel was removed or the stream ended.
    if (!subscription.active) return;
    if (
      this.direct !== null &&
      this.waiters.length > 0 &&
      this.direct(event, subscription.channel)
    ) {
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve({ value: { channel: subscription.channel, event }, done: false });
      return;
    }
    const at = performance.now();
    const oldest = this.buffer[0];
    // Cut off rather than grow without bound: the client catches up from the log, which is
    // cheaper for everyone than this process holding an unbounded backlog.
    if (oldest !== undefined && at - oldest.at > this.maxLagMs) {
      this.fail(SlowConsumerError.lagging(this.maxLagMs));
      return;
    }
    if (this.buffer.length >= this.maxBuffered) {
      this.fail(new SlowConsumerError(this.maxBuffered));
      return;
    }
    this.buffer.push({ channel: subscription.channel, event, at });
  }

  private end(error: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = error;
    this.direct = null;
    for (const subscription of this.subscriptions.values()) this.cancel(subscription);
    this.subscriptions.clear();
    // A failed stream drops its backlog: the client resumes from its cursor anyway, and the
    // memory is released now rather than when a slow consumer gets round to it.
    this.buffer = [];
    const waiters = this.waiters;
    this.waiters = [];
    const first = waiters.shift();
    if (first !== undefined && error !== null) first.reject(error);
    else if (first !== undefined) first.resolve({ value: undefined, done: true });
    else this.pendingError = error;
    for (const waiter of waiters) waiter.resolve({ value: undefined, done: true });
    this.endedSignal?.resolve();
    this.port.ended(this);
  }

  private cancel(subscription: Subscription): void {
    subscription.active = false;
    const unsubscribe = subscription.unsubscribe;
    subscription.unsubscribe = null;
    unsubscribe?.();
  }
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
