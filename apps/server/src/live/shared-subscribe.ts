import {
  createSourceEventStream,
  type ExecutionArgs,
  type ExecutionResult,
  getOperationAST,
  subscribe,
} from 'graphql';
import { isEventsSubscription, type SharedExecution, sharingKey } from './shared-execution.js';
import { drained, type FrameSocket, writeMessage } from './socket-writer.js';

/** Unsent bytes on a socket above which its subscriptions stop taking events until it drains. */
export const HIGH_WATER_BYTES = 1024 * 1024;

/** Where one graphql-ws subscription's frames go: its id on the client's socket. */
export interface LiveTarget {
  readonly id: string;
  readonly socket: FrameSocket;
  /** The query text as the client sent it (part of what makes results shareable). */
  readonly query: string;
}

// Keyed by the execution arguments graphql-ws builds for one subscription: the context factory
// sees them (with the id and the socket) and then hands the same object to `subscribe`.
const targets = new WeakMap<object, LiveTarget>();

/** Records where the subscription executed with `execArgs` writes its frames. */
export function bindLiveTarget(execArgs: object, target: LiveTarget): void {
  targets.set(execArgs, target);
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

/**
 * graphql-ws's `subscribe` for Parley: the `events` subscription writes its own `next` messages
 * (see {@link EventsPump}); anything else goes through graphql-js as before. The messages are
 * the ones graphql-ws would write, byte for byte (sent as fragments that the client joins).
 */
export function sharedSubscribe(
  shared: SharedExecution,
  highWaterBytes = HIGH_WATER_BYTES,
): (args: ExecutionArgs) => Promise<AsyncIterable<ExecutionResult> | ExecutionResult> {
  return async (args) => {
    const target = targets.get(args);
    const operation = getOperationAST(args.document, args.operationName);
    if (target === undefined || operation == null || !isEventsSubscription(operation)) {
      return subscribe(args);
    }
    // Authorisation, rate limits and the device's channels: the resolver, once per subscriber.
    const source = await createSourceEventStream(args);
    if (!isAsyncIterable(source)) return source;
    const key = shared.intern(
      sharingKey(target.query, operation, args.operationName, args.variableValues),
    );
    return new EventsPump(
      source[Symbol.asyncIterator](),
      target,
      (event) => shared.messageTail(key, args, event as object),
      highWaterBytes,
    );
  };
}

/** Where a source that can hand events over in the publisher's call (LiveService's) writes. */
export interface DirectSink {
  /** Whether events may be written now: the pump is waiting for events, its socket not full. */
  ready(): boolean;
  /** Writes the event at once. */
  write(event: unknown): void;
}

/**
 * One subscriber's delivery: takes its events in order (all that are ready at once) and writes
 * each as a `next` message, the shared serialised payload behind this subscription's own id,
 * without awaiting the write.
 * While the socket holds more than the high-water mark it stops taking events (they wait in
 * the subscriber's stream, which cuts it off once they are too old: SLOW_CONSUMER).
 *
 * To graphql-ws it is an iterator that yields nothing: it settles once the events end (done, or
 * rejected with the stream's error, which graphql-ws sends as the subscription's `error`), and
 * its `return()` (client `complete`, socket closed) ends the stream.
 */
export class EventsPump implements AsyncIterableIterator<ExecutionResult> {
  /** `{"id":…,"type":"next","payload":`, this subscription's own part of each message. */
  private readonly head: Buffer;
  private started = false;
  private stopped = false;
  /** True while run() waits for the source's next events. */
  private waiting = false;
  private readonly finished: Promise<IteratorResult<ExecutionResult>>;
  private settle!: (result: IteratorResult<ExecutionResult>) => void;
  private fail!: (error: unknown) => void;

  constructor(
    private readonly source: AsyncIterator<unknown>,
    private readonly target: LiveTarget,
    /** An event's shared bytes, after this subscription's own {@link head}. */
    private readonly render: (event: unknown) => Buffer,
    private readonly highWaterBytes: number,
  ) {
    this.head = Buffer.from(`{"id":${JSON.stringify(target.id)},"type":"next","payload":`);
    this.finished = new Promise((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
    });
  }

  /** Starts delivering (graphql-ws calls it once the subscription is registered). */
  next(): Promise<IteratorResult<ExecutionResult>> {
    if (!this.started) {
      this.started = true;
      void this.run();
    }
    return this.finished;
  }

  async return(): Promise<IteratorResult<ExecutionResult>> {
    this.stopped = true;
    this.settle({ value: undefined, done: true });
    await this.source.return?.();
    return { value: undefined, done: true };
  }

  async throw(): Promise<IteratorResult<ExecutionResult>> {
    return this.return();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * The source's events ready now: LiveService's streams hand over every event ready at once
   * (one promise per burst, not per event); any other source one at a time.
   */
  private take(): Promise<IteratorResult<readonly unknown[], unknown>> {
    const source = this.source as Partial<{
      nextBatch(): Promise<IteratorResult<readonly unknown[], unknown>>;
    }>;
    if (typeof source.nextBatch === 'function') return source.nextBatch();
    return this.source
      .next()
      .then((next) => (next.done === true ? next : { value: [next.value], done: false }));
  }

  /** When the source says it ended (LiveService's streams do), if it can. */
  private whenEnded(): Promise<void> | undefined {
    const source = this.source as Partial<{ whenEnded(): Promise<void> }>;
    return typeof source.whenEnded === 'function' ? source.whenEnded() : undefined;
  }

  /** Whether return() was called (a method, as it changes while run() awaits). */
  private ended(): boolean {
    return this.stopped;
  }

  /** Writes the event as a `next` message, without waiting. */
  private write(event: unknown): void {
    writeMessage(this.target.socket, this.head, this.render(event));
  }

  /**
   * Lets the source write events in the publisher's call while this pump waits for them and the
   * socket is below the high-water mark (LiveService's streams can; see Steps.attach).
   */
  private attach(): void {
    const source = this.source as Partial<{ attach(sink: DirectSink): void }>;
    if (typeof source.attach !== 'function') return;
    const { socket } = this.target;
    source.attach({
      ready: () =>
        this.waiting &&
        !this.ended() &&
        socket.readyState === socket.OPEN &&
        socket.bufferedAmount <= this.highWaterBytes,
      write: (event) => {
        try {
          this.write(event);
        } catch (error) {
          // As in run(): the subscription ends with the error, and the stream with it.
          this.stopped = true;
          this.fail(error);
          void this.source.return?.();
        }
      },
    });
  }

  private async run(): Promise<void> {
    const { socket } = this.target;
    this.attach();
    try {
      for (;;) {
        if (socket.bufferedAmount > this.highWaterBytes) {
          // Until the socket drains, or the stream ends (a lagging subscriber is cut: its error
          // is queued behind the frames already written, which the client reads first).
          await drained(socket, this.highWaterBytes, this.whenEnded());
        }
        if (this.ended()) break;
        this.waiting = true;
        let next: IteratorResult<readonly unknown[], unknown>;
        try {
          next = await this.take();
        } finally {
          this.waiting = false;
        }
        // return() may have come while the events were awaited: then they are not written.
        if (next.done === true || this.ended()) break;
        for (const event of next.value) this.write(event);
      }
      this.settle({ value: undefined, done: true });
    } catch (error) {
      if (this.ended()) this.settle({ value: undefined, done: true });
      else this.fail(error);
    }
  }
}
