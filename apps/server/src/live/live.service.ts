import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In } from 'typeorm';
import { DomainError, limitExceeded } from '../common/domain.errors.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { ConversationMemberEntity } from '../conversations/conversation-member.entity.js';
import { ConversationEntity } from '../conversations/conversation.entity.js';
import {
  ConversationKindValue,
  ConversationRoleValue,
} from '../conversations/conversation.model.js';
import { deviceRevoked } from '../devices/devices.errors.js';
import { DevicesService } from '../devices/devices.service.js';
import type { BusEvent } from '../events/event-bus.js';
import { EventBus } from '../events/event-bus.js';
import { EventStreamError } from '../events/events.errors.js';
import type { EventStream } from '../events/event-stream.js';
import { LogEntryKindValue } from '../messages/message.model.js';
import { MessagesService } from '../messages/messages.service.js';
import type { DeviceEvent } from './live-event.model.js';
import { conversationChannel, deviceChannel, type LiveEvent } from './live-event.js';
import { DEADLINE, OrderedDelivery, withDeadlines } from './ordered-delivery.js';

/**
 * An EventStreamError as the DomainError that the one error mapping keeps the code of (anything
 * else reaches clients as INTERNAL_SERVER_ERROR); other errors unchanged.
 */
function typedStreamError(error: unknown): unknown {
  return error instanceof EventStreamError
    ? new DomainError(error.code, error.message, { retryable: true })
    : error;
}

/** The events, then `release` however they end. */
async function* releasing(
  events: AsyncGenerator<DeviceEvent, void, undefined>,
  release: () => void,
): AsyncGenerator<DeviceEvent, void, undefined> {
  try {
    yield* events;
  } finally {
    release();
  }
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

/**
 * A device's events as graphql-ws consumes them. graphql-ws ends a subscription (the client
 * completed it or disconnected) with return(), which an async generator only honours at its next
 * `yield`: one waiting for the next event of a quiet conversation kept its stream, and the
 * stream's bus subscriptions, until an event came, if ever. Closing the stream first ends that
 * wait at once.
 */
class DeviceEvents implements AsyncIterableIterator<DeviceEvent, void> {
  constructor(
    private readonly events: AsyncGenerator<DeviceEvent, void, undefined>,
    private readonly stream: EventStream,
    /** Gives the device's subscription slot back; safe to call more than once. */
    private readonly release: () => void,
  ) {}

  next(): Promise<IteratorResult<DeviceEvent, void>> {
    return this.events.next();
  }

  /**
   * Resolves once the bus stream ended (closed, or cut: SLOW_CONSUMER, EVENTS_UNAVAILABLE), so
   * that a consumer paused on a backed-up socket takes the error now rather than after it drains.
   */
  whenEnded(): Promise<void> {
    return this.stream.whenEnded();
  }

  return(): Promise<IteratorResult<DeviceEvent, void>> {
    this.stream.close();
    this.release();
    return this.events.return(undefined);
  }

  throw(error: unknown): Promise<IteratorResult<DeviceEvent, void>> {
    this.stream.close();
    this.release();
    return this.events.throw(error);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
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
    private readonly devices: DevicesService,
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
    const seats = await this.dataSource.transaction(async (manager) => {
      const device = await this.devices.owned(manager, userId, deviceId);
      return manager.find(ConversationMemberEntity, {
        select: { conversationId: true },
        where: { deviceId: device.id, leaving: false },
      });
    });
    // Cut for lag in time, not a count: the pump stops taking events while the client's socket
    // is backed up (live/shared-subscribe.ts), and they wait here until too old.
    const stream = this.bus.open(
      [deviceChannel(deviceId), ...seats.map((seat) => conversationChannel(seat.conversationId))],
      { maxLagMs: this.config.liveMaxLagMs },
    );
    try {
      await stream.ready();
    } catch (error) {
      // The bus cannot deliver right now (Redis down or hanging): typed, so the client retries.
      throw typedStreamError(error);
    }
    // A deletion that committed while the stream was being opened published before the device's
    // channel was live: look once more, now that no later deletion can be missed.
    if (!(await this.devices.exists(deviceId))) {
      stream.close();
      throw deviceRevoked(deviceId);
    }
    // Read once the channels are live: what committed up to here the client pages with
    // messages(after:), what commits later comes live, in order, from here on.
    const baselines = await this.lastSeqs(seats.map((seat) => seat.conversationId));
    let release: () => void;
    try {
      release = this.takeSlot(deviceId);
    } catch (error) {
      stream.close();
      throw error;
    }
    return new DeviceEvents(
      releasing(this.follow(stream, userId, deviceId, baselines), release),
      stream,
      release,
    );
  }

  private async *follow(
    stream: EventStream,
    userId: string,
    deviceId: string,
    baselines: Map<string, bigint>,
  ): AsyncGenerator<DeviceEvent, void, undefined> {
    // Each conversation's entries go out in seq order with no gap, whichever instance published
    // them: early ones are held, missing ones read from the log after a short wait.
    const order = new OrderedDelivery<DeviceEvent>();
    for (const [conversationId, seq] of baselines) order.track(conversationId, seq);
    try {
      yield { subscribedDeviceId: deviceId };
      for await (const next of withDeadlines(stream, () => order.deadline())) {
        if (next === DEADLINE) {
          for (const { conversationId, after } of order.due()) {
            yield* this.readMissing(order, stream, userId, deviceId, conversationId, after);
          }
          continue;
        }
        const live = asLiveEvent(next.event);
        switch (live.type) {
          case 'message': {
            const entry = shared(next.event, () => ({
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
            }));
            const seq = BigInt(live.seq);
            const ready = order.accept(live.conversationId, { seq, follower: false, event: entry });
            yield* this.inOrder(order, stream, deviceId, live.conversationId, ready);
            break;
          }
          case 'roster': {
            const roster = shared(next.event, () => ({
              conversationId: live.conversationId,
              seq: live.seq,
              epoch: live.epoch,
              addedDeviceIds: live.added,
              removedDeviceIds: live.removed,
            }));
            const seq = BigInt(live.seq);
            if (live.added.includes(deviceId) && !order.has(live.conversationId)) {
              // Created by this device (on its own channel): followed from here on.
              yield* this.join(order, stream, userId, deviceId, live.conversationId, seq, roster);
            } else {
              const ready = order.accept(live.conversationId, {
                seq,
                follower: true,
                event: roster,
              });
              yield* this.inOrder(order, stream, deviceId, live.conversationId, ready);
            }
            break;
          }
          case 'welcome': {
            const welcome: DeviceEvent = {
              welcomeId: live.welcomeId,
              conversationId: live.conversationId,
              epoch: live.epoch,
              commitSeq: live.commitSeq,
              createdAt: live.createdAt,
            };
            const seq = BigInt(live.commitSeq);
            yield* this.join(order, stream, userId, deviceId, live.conversationId, seq, welcome);
            break;
          }
          case 'leave': {
            if (live.deviceId === deviceId) {
              // This device left: nothing more of the conversation is its to hear.
              order.untrack(live.conversationId);
              stream.remove(conversationChannel(live.conversationId));
              break;
            }
            yield { conversationId: live.conversationId, leavingDeviceId: live.deviceId };
            break;
          }
          case 'device-revoked':
            // The device was deleted: its subscription ends now, before anything sent later.
            if (live.deviceId === deviceId) throw deviceRevoked(deviceId);
            break;
          case 'member-revoked':
            if (live.deviceId === deviceId) throw deviceRevoked(deviceId);
            yield { conversationId: live.conversationId, revokedDeviceId: live.deviceId };
            break;
          case 'key-packages-low':
            yield { deviceId: live.deviceId, available: live.available, lowWater: live.lowWater };
            break;
          case 'joinable':
            if (live.deviceId === deviceId) {
              yield { conversationId: live.conversationId, kind: ConversationKindValue[live.kind] };
            }
            break;
          case 'ephemeral':
            // Only to devices that follow the conversation now, and not back to the sender.
            if (order.has(live.conversationId) && live.senderDeviceId !== deviceId) {
              yield shared(next.event, () => ({
                conversationId: live.conversationId,
                senderDeviceId: live.senderDeviceId,
                message: Buffer.from(live.data, 'base64'),
              }));
            }
            break;
          case 'call':
            // To the devices that follow the conversation now (the caller's other devices too).
            if (order.has(live.call.conversationId)) {
              yield shared(next.event, () => ({
                callChange: live.change,
                callDeviceId: live.deviceId,
                call: live.call,
              }));
            }
            break;
          case 'role':
            yield shared(next.event, () => ({
              conversationId: live.conversationId,
              userId: live.userId,
              role: ConversationRoleValue[live.role],
            }));
            break;
        }
      }
    } catch (error) {
      // The stream ended early (slow consumer, pub/sub lost): tell the client in a typed way,
      // so that it resumes from its cursors with messages(after:). A DomainError, because that is
      // what the one error mapping keeps the code of; anything else would be an internal error.
      throw typedStreamError(error);
    } finally {
      stream.close();
    }
  }
  /**
   * Yields a conversation's events in the order given; once one is the commit that removed this
   * device, nothing more of the conversation is its to hear (entries after it included).
   */
  private *inOrder(
    order: OrderedDelivery<DeviceEvent>,
    stream: EventStream,
    deviceId: string,
    conversationId: string,
    events: DeviceEvent[],
  ): Generator<DeviceEvent, void, undefined> {
    for (const event of events) {
      yield deliverable(event);
      if ('removedDeviceIds' in event && event.removedDeviceIds.includes(deviceId)) {
        order.untrack(conversationId);
        stream.remove(conversationChannel(conversationId));
        return;
      }
    }
  }

  /**
   * The device joined a conversation at `seq` (the commit that added it, 0 for its creator):
   * follows its channel, yields `event`, then what the log already holds after `seq` — entries
   * published before the channel was live would otherwise never come.
   */
  private async *join(
    order: OrderedDelivery<DeviceEvent>,
    stream: EventStream,
    userId: string,
    deviceId: string,
    conversationId: string,
    seq: bigint,
    event: DeviceEvent,
  ): AsyncGenerator<DeviceEvent, void, undefined> {
    if (!order.has(conversationId)) order.track(conversationId, seq);
    await stream.add(conversationChannel(conversationId));
    yield event;
    yield* this.readMissing(order, stream, userId, deviceId, conversationId, seq);
  }

  /** Reads the entries after `after` from the log (as the device may) and yields them in order. */
  private async *readMissing(
    order: OrderedDelivery<DeviceEvent>,
    stream: EventStream,
    userId: string,
    deviceId: string,
    conversationId: string,
    after: bigint,
  ): AsyncGenerator<DeviceEvent, void, undefined> {
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
    yield* this.inOrder(order, stream, deviceId, conversationId, ready);
  }

  /** Each conversation's last seq now. */
  private async lastSeqs(conversationIds: string[]): Promise<Map<string, bigint>> {
    if (conversationIds.length === 0) return new Map();
    const conversations = await this.dataSource.getRepository(ConversationEntity).find({
      select: { id: true, lastSeq: true },
      where: { id: In(conversationIds) },
    });
    return new Map(conversations.map((c) => [c.id, BigInt(c.lastSeq)]));
  }
}
