import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { DomainError, forbidden, limitExceeded, notFound } from '../common/domain.errors.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import {
  ConversationKindValue,
  ConversationRoleValue,
} from '../conversations/conversation.model.js';
import { deviceRevoked } from '../devices/devices.errors.js';
import type { BusEvent, BusMessage } from '../events/event-bus.js';
import { EventBus } from '../events/event-bus.js';
import { EventStreamError } from '../events/events.errors.js';
import type { EventStream } from '../events/event-stream.js';
import { LogEntryKindValue } from '../messages/message.model.js';
import { MessagesService } from '../messages/messages.service.js';
import type { DeviceEvent } from './live-event.model.js';
import {
  conversationChannel,
  deviceChannel,
  type LiveEvent,
  type MessageLiveEvent,
} from './live-event.js';
import { DEADLINE, OrderedDelivery, withDeadlines } from './ordered-delivery.js';
import type { DirectSink } from './shared-subscribe.js';

/**
 * An EventStreamError as the DomainError that the one error mapping keeps the code of (anything
 * else reaches clients as INTERNAL_SERVER_ERROR); other errors unchanged.
 */
function typedStreamError(error: unknown): unknown {
  return error instanceof EventStreamError
    ? new DomainError(error.code, error.message, { retryable: true })
    : error;
}

/**
 * An event as it may leave now: a log entry whose expiry has passed while it waited (in the bus's
 * queue for a slow subscriber, or held for order) goes out as an expired marker in its place,
 * never with its bytes.
 */
export function deliverable(event: DeviceEvent, now = Date.now()): DeviceEvent {
  if (!('entry' in event) || event.entry.expiresAt === null) return event;
  if (event.entry.expiresAt.getTime() > now) return event;
  const { conversationId, seq } = event.entry;
  return { conversationId, expiredFromSeq: seq, expiredToSeq: seq };
}

/** Publishers only put LiveEvents on Parley's channels. */
const asLiveEvent = (event: BusEvent) => event as unknown as LiveEvent;

const built = new WeakMap<BusEvent, DeviceEvent>();

/**
 * The device event for a bus event, built once for every stream that receives it: the bus hands
 * all of them the same object, and one object is what lets the `events` subscription execute
 * and serialise it once for all its subscribers (see shared-execution.ts). Read-only thereafter.
 */
function shared(event: BusEvent, build: () => DeviceEvent): DeviceEvent {
  let deviceEvent = built.get(event);
  if (deviceEvent === undefined) {
    deviceEvent = build();
    built.set(event, deviceEvent);
  }
  return deviceEvent;
}

/** A log entry's device event, with the `seq` it is ordered by. */
interface SharedEntry {
  readonly seq: bigint;
  readonly event: DeviceEvent;
}

const entries = new WeakMap<BusEvent, SharedEntry>();

/**
 * A message event's device event and `seq`, built once for every stream that receives it (as
 * {@link shared} does for other events): per subscriber, the fan-out then makes no object and
 * parses no number.
 */
function sharedEntry(event: BusEvent, live: MessageLiveEvent): SharedEntry {
  let entry = entries.get(event);
  if (entry === undefined) {
    entry = {
      seq: BigInt(live.seq),
      event: {
        entry: {
          conversationId: live.conversationId,
          seq: live.seq,
          kind: LogEntryKindValue[live.kind],
          epoch: live.epoch,
          senderDeviceId: live.senderDeviceId,
          createdAt: live.createdAt,
          message: Buffer.from(live.data, 'base64'),
          expiresAt: live.expiresAt,
          timerSeconds: live.timerSeconds,
        },
      },
    };
    entries.set(event, entry);
  }
  return entry;
}

/**
 * Bus events a live stream takes in one step when it has fallen behind a burst (a batch of
 * appended messages comes as one bus message): bounds how far past its socket's high-water mark
 * one step may write.
 */
const EVENTS_PER_STEP = 256;

/**
 * A device's events as graphql-ws consumes them: in steps of every event ready at once (the
 * fan-out's way, {@link DeviceEvents.nextBatch}), or one at a time (graphql-js's). graphql-ws
 * ends a subscription (the client completed it or disconnected) with return(), which an async
 * generator only honours at its next `yield`: one waiting for the next event of a quiet
 * conversation kept its stream, and the stream's bus subscriptions, until an event came, if
 * ever. Closing the stream first ends that wait at once.
 */
class DeviceEvents implements AsyncIterableIterator<DeviceEvent, void> {
  /** What the last step brought and next() has not handed out yet. */
  private pending: DeviceEvent[] = [];

  constructor(
    private readonly steps: Steps,
    private readonly stream: EventStream,
    /** Gives the device's subscription slot back; safe to call more than once. */
    private readonly release: () => void,
  ) {}

  /** The events ready now, in order: at least one, waiting for it when none is. */
  async nextBatch(): Promise<IteratorResult<readonly DeviceEvent[], void>> {
    if (this.pending.length > 0) {
      const ready = this.pending;
      this.pending = [];
      return { value: ready, done: false };
    }
    try {
      const step = await this.steps.next();
      if (step.done === true) this.release();
      return step;
    } catch (error) {
      this.release();
      throw error;
    }
  }

  async next(): Promise<IteratorResult<DeviceEvent, void>> {
    for (;;) {
      const event = this.pending.shift();
      if (event !== undefined) return { value: event, done: false };
      const step = await this.nextBatch();
      if (step.done === true) return step;
      this.pending = [...step.value];
    }
  }

  /**
   * From now on, events that can go out at once on their own are written to `sink` in the
   * publisher's call rather than handed over in steps (see {@link Steps.attach}).
   */
  attach(sink: DirectSink): void {
    this.steps.attach(sink);
  }

  /**
   * Resolves once the bus stream ended (closed, or cut: SLOW_CONSUMER, EVENTS_UNAVAILABLE), so
   * that a consumer paused on a backed-up socket takes the error now rather than after it drains.
   */
  whenEnded(): Promise<void> {
    return this.stream.whenEnded();
  }

  async return(): Promise<IteratorResult<DeviceEvent, void>> {
    this.stream.close();
    this.release();
    await this.steps.return();
    return { value: undefined, done: true };
  }

  async throw(error: unknown): Promise<IteratorResult<DeviceEvent, void>> {
    this.stream.close();
    this.release();
    await this.steps.throw(error);
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** A live stream's steps, as {@link DeviceEvents} takes them. */
interface Steps {
  next(): Promise<IteratorResult<DeviceEvent[], void>>;
  /** Ends the steps (the stream closes). */
  return(): Promise<IteratorResult<DeviceEvent[], void>>;
  /** Ends the steps; rejects with `error` as clients are to see it. */
  throw(error: unknown): Promise<IteratorResult<DeviceEvent[], void>>;
  /**
   * While the steps wait for the bus with nothing of theirs in flight, a conversation's next
   * entry, with nothing held before it, is routed and written to `sink` in the publisher's call:
   * the fan-out to caught-up subscribers is then one synchronous loop. Anything else (a commit,
   * a join, a gap, a backed-up socket) still comes in steps, and so does everything after it
   * until the steps wait again: order holds.
   */
  attach(sink: DirectSink): void;
}

/** One live stream's state, as its steps share it. */
interface Follower {
  readonly order: OrderedDelivery<DeviceEvent>;
  readonly stream: EventStream;
  readonly userId: string;
  readonly deviceId: string;
}

/**
 * One live stream per connected device: its own channel plus one per conversation it is in,
 * following roster changes as they happen. Per message, the work is one event per
 * conversation, fanned out by the bus to whichever instance holds each device's socket.
 */
@Injectable()
export class LiveService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly bus: EventBus,
    private readonly messages: MessagesService,
    @Inject(CONFIG) private readonly config: Config,
  ) {}

  /** Open streams per device on this instance. */
  private readonly openStreams = new Map<string, number>();

  /** Takes one of the device's subscription slots; the result gives it back, once. */
  private takeSlot(deviceId: string): () => void {
    const limit = this.config.limits.subscriptionsPerDevice;
    const open = this.openStreams.get(deviceId) ?? 0;
    if (open >= limit) throw limitExceeded('Live subscriptions per device', limit);
    this.openStreams.set(deviceId, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.openStreams.get(deviceId) ?? 1) - 1;
      if (left === 0) this.openStreams.delete(deviceId);
      else this.openStreams.set(deviceId, left);
    };
  }

  /** The device's events, live from the moment this resolves. */
  async stream(
    userId: string,
    deviceId: string,
  ): Promise<AsyncIterableIterator<DeviceEvent, void>> {
    const seats = await this.seatsOf(userId, deviceId);
    // Cut for lag in time, not a count: the pump stops taking events while the client's socket
    // is backed up (live/shared-subscribe.ts), and they wait here until too old.
    const stream = this.bus.open([deviceChannel(deviceId), ...seats.map(conversationChannel)], {
      maxLagMs: this.config.liveMaxLagMs,
    });
    try {
      await stream.ready();
    } catch (error) {
      // The bus cannot deliver right now (Redis down or hanging): typed, so the client retries.
      throw typedStreamError(error);
    }
    // Read once the channels are live: what committed up to here the client pages with
    // messages(after:), what commits later comes live, in order, from here on. A deletion that
    // committed while the stream was being opened published before the device's channel was
    // live: the same read looks once more, now that no later deletion can be missed.
    const baselines = await this.baselines(deviceId, seats);
    if (baselines === null) {
      stream.close();
      throw deviceRevoked(deviceId);
    }
    let release: () => void;
    try {
      release = this.takeSlot(deviceId);
    } catch (error) {
      stream.close();
      throw error;
    }
    return new DeviceEvents(this.follow(stream, userId, deviceId, baselines), stream, release);
  }

  /**
   * The device's events in steps: each step is what one batch of bus events (or one deadline)
   * made ready, in order. A plain iterator, not an async generator: it runs once per subscriber
   * per step, and a generator's hops cost more than the routing itself.
   */
  private follow(
    stream: EventStream,
    userId: string,
    deviceId: string,
    baselines: Map<string, bigint>,
  ): Steps {
    // Each conversation's entries go out in seq order with no gap, whichever instance published
    // them: early ones are held, missing ones read from the log after a short wait.
    const order = new OrderedDelivery<DeviceEvent>();
    for (const [conversationId, seq] of baselines) order.track(conversationId, seq);
    const follower: Follower = { order, stream, userId, deviceId };
    const batches = withDeadlines({ next: () => stream.nextBatch(EVENTS_PER_STEP) }, () =>
      order.deadline(),
    );
    let subscribed = false;
    let ended = false;
    // True while step() waits for the bus: nothing of the steps is in flight then.
    let idle = false;
    let sink: DirectSink | undefined;
    const direct = (event: BusEvent): boolean => {
      if (!idle || ended || sink === undefined || !sink.ready()) return false;
      const live = asLiveEvent(event);
      // Only a log entry: anything else may change what the stream follows.
      if (live.type !== 'message') return false;
      let entry: SharedEntry;
      try {
        entry = sharedEntry(event, live);
      } catch {
        // Not in the publisher's call: the event goes through the steps, which end the stream
        // with whatever it was.
        return false;
      }
      if (!order.takeNext(live.conversationId, entry.seq)) return false;
      sink.write(deliverable(entry.event));
      return true;
    };
    // An error met after events that were ready before it: they go out first, it comes next.
    let failure: { error: unknown } | undefined;
    const end = () => {
      ended = true;
      stream.close();
    };
    const step = async (): Promise<DeviceEvent[] | undefined> => {
      for (;;) {
        idle = true;
        let next: IteratorResult<readonly BusMessage[] | typeof DEADLINE, void>;
        try {
          next = await batches.next();
        } finally {
          idle = false;
        }
        if (next.done === true) return undefined;
        const out: DeviceEvent[] = [];
        try {
          if (next.value === DEADLINE) {
            for (const { conversationId, after } of order.due()) {
              await this.readMissing(follower, conversationId, after, out);
            }
          } else {
            for (const message of next.value) {
              // Only joining a conversation waits (for its channel and the log).
              const joining = this.route(follower, message.event, out);
              if (joining !== undefined) await joining;
            }
          }
        } catch (error) {
          // What was ready before it (a revocation, say) still goes out first, as it came first.
          failure = { error };
        }
        if (out.length > 0) return out;
        if (failure !== undefined) throw failure.error;
      }
    };
    const done: IteratorResult<DeviceEvent[], void> = { value: undefined, done: true };
    return {
      next: async () => {
        if (ended) return done;
        if (!subscribed) {
          subscribed = true;
          return { value: [{ subscribedDeviceId: deviceId }], done: false };
        }
        try {
          if (failure !== undefined) throw failure.error;
          const out = await step();
          if (out === undefined) {
            end();
            return done;
          }
          return { value: out, done: false };
        } catch (error) {
          end();
          // The stream ended early (slow consumer, pub/sub lost): tell the client in a typed
          // way, so that it resumes from its cursors with messages(after:). A DomainError,
          // because that is what the one error mapping keeps the code of; anything else would
          // be an internal error.
          throw typedStreamError(error);
        }
      },
      return: () => {
        end();
        return Promise.resolve(done);
      },
      attach: (to) => {
        sink = to;
        stream.takeDirectly(direct);
      },
      throw: (error) => {
        end();
        const typed = typedStreamError(error);
        return Promise.reject(typed instanceof Error ? typed : new Error(String(typed)));
      },
    };
  }

  /**
   * Adds to `out` what one bus event means for the device, in order; the promise when the
   * device joins a conversation (settled once its events are in `out`), otherwise nothing.
   */
  private route(
    follower: Follower,
    event: BusEvent,
    out: DeviceEvent[],
  ): Promise<void> | undefined {
    const { order, stream, deviceId } = follower;
    const live = asLiveEvent(event);
    switch (live.type) {
      case 'message': {
        const { seq, event: entry } = sharedEntry(event, live);
        const ready = order.accept(live.conversationId, { seq, follower: false, event: entry });
        this.inOrder(follower, live.conversationId, ready, out);
        return undefined;
      }
      case 'roster': {
        const roster = shared(event, () => ({
          conversationId: live.conversationId,
          seq: live.seq,
          epoch: live.epoch,
          addedDeviceIds: live.added,
          removedDeviceIds: live.removed,
        }));
        const seq = BigInt(live.seq);
        if (live.added.includes(deviceId) && !order.has(live.conversationId)) {
          // Created by this device (on its own channel): followed from here on.
          return this.join(follower, live.conversationId, seq, roster, out);
        }
        const ready = order.accept(live.conversationId, { seq, follower: true, event: roster });
        this.inOrder(follower, live.conversationId, ready, out);
        return undefined;
      }
      case 'welcome': {
        const welcome: DeviceEvent = {
          welcomeId: live.welcomeId,
          conversationId: live.conversationId,
          epoch: live.epoch,
          commitSeq: live.commitSeq,
          createdAt: live.createdAt,
        };
        return this.join(follower, live.conversationId, BigInt(live.commitSeq), welcome, out);
      }
      case 'leave':
        if (live.deviceId === deviceId) {
          // This device left: nothing more of the conversation is its to hear.
          order.untrack(live.conversationId);
          stream.remove(conversationChannel(live.conversationId));
        } else {
          out.push({ conversationId: live.conversationId, leavingDeviceId: live.deviceId });
        }
        return undefined;
      case 'device-revoked':
        // The device was deleted: its subscription ends now, before anything sent later.
        if (live.deviceId === deviceId) throw deviceRevoked(deviceId);
        return undefined;
      case 'member-revoked':
        if (live.deviceId === deviceId) throw deviceRevoked(deviceId);
        out.push({ conversationId: live.conversationId, revokedDeviceId: live.deviceId });
        return undefined;
      case 'key-packages-low':
        out.push({ deviceId: live.deviceId, available: live.available, lowWater: live.lowWater });
        return undefined;
      case 'joinable':
        if (live.deviceId === deviceId) {
          out.push({ conversationId: live.conversationId, kind: ConversationKindValue[live.kind] });
        }
        return undefined;
      case 'ephemeral':
        // Only to devices that follow the conversation now, and not back to the sender.
        if (order.has(live.conversationId) && live.senderDeviceId !== deviceId) {
          out.push(
            shared(event, () => ({
              conversationId: live.conversationId,
              senderDeviceId: live.senderDeviceId,
              message: Buffer.from(live.data, 'base64'),
            })),
          );
        }
        return undefined;
      case 'call':
        // To the devices that follow the conversation now (the caller's other devices too).
        if (order.has(live.call.conversationId)) {
          out.push(
            shared(event, () => ({
              callChange: live.change,
              callDeviceId: live.deviceId,
              call: live.call,
            })),
          );
        }
        return undefined;
      case 'role':
        out.push(
          shared(event, () => ({
            conversationId: live.conversationId,
            userId: live.userId,
            role: ConversationRoleValue[live.role],
          })),
        );
        return undefined;
    }
  }

  /**
   * Adds a conversation's events to `out` in the order given; once one is the commit that
   * removed this device, nothing more of the conversation is its to hear (entries after it
   * included).
   */
  private inOrder(
    { order, stream, deviceId }: Follower,
    conversationId: string,
    events: DeviceEvent[],
    out: DeviceEvent[],
  ): void {
    for (const event of events) {
      out.push(deliverable(event));
      if ('removedDeviceIds' in event && event.removedDeviceIds.includes(deviceId)) {
        order.untrack(conversationId);
        stream.remove(conversationChannel(conversationId));
        return;
      }
    }
  }

  /**
   * The device joined a conversation at `seq` (the commit that added it, 0 for its creator):
   * follows its channel, adds `event` to `out`, then what the log already holds after `seq` —
   * entries published before the channel was live would otherwise never come.
   */
  private async join(
    follower: Follower,
    conversationId: string,
    seq: bigint,
    event: DeviceEvent,
    out: DeviceEvent[],
  ): Promise<void> {
    if (!follower.order.has(conversationId)) follower.order.track(conversationId, seq);
    await follower.stream.add(conversationChannel(conversationId));
    out.push(event);
    await this.readMissing(follower, conversationId, seq, out);
  }

  /** Reads the entries after `after` from the log (as the device may) and adds them in order. */
  private async readMissing(
    follower: Follower,
    conversationId: string,
    after: bigint,
    out: DeviceEvent[],
  ): Promise<void> {
    const { order, stream, userId, deviceId } = follower;
    const read = await this.messages.readMissing(userId, deviceId, conversationId, after);
    if (read === null) {
      // No longer a member: nothing of the conversation is its to hear, from the log or live.
      order.untrack(conversationId);
      stream.remove(conversationChannel(conversationId));
      return;
    }
    const entries: { seq: bigint; event: DeviceEvent }[] = read.entries.map((entry) => ({
      seq: BigInt(entry.seq),
      event: { entry },
    }));
    // In their place in the log's order, the ranges the timer deleted (seqs the device then
    // knows are gone, not missing).
    for (const range of read.expired) {
      entries.push({
        seq: BigInt(range.fromSeq),
        event: { conversationId, expiredFromSeq: range.fromSeq, expiredToSeq: range.toSeq },
      });
    }
    entries.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    const ready = order.fill(conversationId, entries, read.covered);
    this.inOrder(follower, conversationId, ready, out);
  }

  /**
   * The conversations the device sits in (not leaving), in one statement: NOT_FOUND when there
   * is no such device, FORBIDDEN when it is another user's (as DevicesService.owned decides).
   */
  private async seatsOf(userId: string, deviceId: string): Promise<string[]> {
    const rows: { user_id: string; conversation_id: string | null }[] = await this.dataSource.query(
      `SELECT d."user_id", m."conversation_id"
         FROM "devices" d
         LEFT JOIN "conversation_members" m ON m."device_id" = d."id" AND NOT m."leaving"
        WHERE d."id" = $1`,
      [deviceId],
    );
    const [first] = rows;
    if (first === undefined) throw notFound('Device');
    if (first.user_id !== userId) throw forbidden('That device belongs to another user');
    return rows.flatMap((row) => (row.conversation_id === null ? [] : [row.conversation_id]));
  }

  /**
   * Each conversation's last seq now, or null when the device no longer exists: one statement.
   */
  private async baselines(
    deviceId: string,
    conversationIds: string[],
  ): Promise<Map<string, bigint> | null> {
    const list = conversationIds.map((_, i) => `$${i + 2}`).join(', ');
    // int8: a string from pg, a number from PGlite.
    const rows: { id: string | null; last_seq: string | number | null }[] =
      await this.dataSource.query(
        `SELECT c."id", c."last_seq"
           FROM "devices" d
           LEFT JOIN "conversations" c ON ${list === '' ? 'false' : `c."id" IN (${list})`}
          WHERE d."id" = $1`,
        [deviceId, ...conversationIds],
      );
    if (rows.length === 0) return null;
    return new Map(
      rows.flatMap((row) =>
        row.id === null || row.last_seq === null ? [] : [[row.id, BigInt(row.last_seq)]],
      ),
    );
  }
}
