import { Injectable } from '@nestjs/common';
import { GraphQLError } from 'graphql';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { ConversationMemberEntity } from '../conversations/conversation-member.entity.js';
import { DevicesService } from '../devices/devices.service.js';
import type { BusEvent } from '../events/event-bus.js';
import { EventBus } from '../events/event-bus.js';
import { EventStreamError } from '../events/events.errors.js';
import type { EventStream } from '../events/event-stream.js';
import { LogEntryKindValue } from '../messages/message.model.js';
import type { DeviceEvent } from './live-event.model.js';
import { conversationChannel, deviceChannel, type LiveEvent } from './live-event.js';

/** Publishers only put LiveEvents on Parley's channels. */
const asLiveEvent = (event: BusEvent) => event as unknown as LiveEvent;

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
  ) {}

  next(): Promise<IteratorResult<DeviceEvent, void>> {
    return this.events.next();
  }

  return(): Promise<IteratorResult<DeviceEvent, void>> {
    this.stream.close();
    return this.events.return(undefined);
  }

  throw(error: unknown): Promise<IteratorResult<DeviceEvent, void>> {
    this.stream.close();
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
  ) {}

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
    const stream = this.bus.open([
      deviceChannel(deviceId),
      ...seats.map((seat) => conversationChannel(seat.conversationId)),
    ]);
    await stream.ready();
    return new DeviceEvents(this.follow(stream, deviceId), stream);
  }

  private async *follow(
    stream: EventStream,
    deviceId: string,
  ): AsyncGenerator<DeviceEvent, void, undefined> {
    // Sequence number at which the device left each conversation: entries after it are not its
    // to see, even if the bus delivers them before the roster change (several publishers).
    const leftAt = new Map<string, bigint>();
    try {
      yield { subscribedDeviceId: deviceId };
      for await (const { event } of stream) {
        const live = asLiveEvent(event);
        switch (live.type) {
          case 'message': {
            const left = leftAt.get(live.conversationId);
            if (left !== undefined && BigInt(live.seq) > left) break;
            yield {
              entry: {
                conversationId: live.conversationId,
                seq: live.seq,
                kind: LogEntryKindValue[live.kind],
                epoch: live.epoch,
                senderDeviceId: live.senderDeviceId,
                createdAt: live.createdAt,
                message: Buffer.from(live.data, 'base64'),
              },
            };
            break;
          }
          case 'roster': {
            if (live.removed.includes(deviceId)) {
              leftAt.set(live.conversationId, BigInt(live.seq));
              stream.remove(conversationChannel(live.conversationId));
            } else if (live.added.includes(deviceId)) {
              leftAt.delete(live.conversationId);
              await stream.add(conversationChannel(live.conversationId));
            }
            yield {
              conversationId: live.conversationId,
              seq: live.seq,
              epoch: live.epoch,
              addedDeviceIds: live.added,
              removedDeviceIds: live.removed,
            };
            break;
          }
          case 'welcome': {
            // Joined: from now on the conversation's entries come live; those between the commit
            // and this moment the device reads with messages(after: commitSeq).
            leftAt.delete(live.conversationId);
            await stream.add(conversationChannel(live.conversationId));
            yield {
              welcomeId: live.welcomeId,
              conversationId: live.conversationId,
              epoch: live.epoch,
              commitSeq: live.commitSeq,
              createdAt: live.createdAt,
            };
            break;
          }
          case 'leave': {
            if (live.deviceId === deviceId) {
              // This device left: nothing more of the conversation is its to hear.
              stream.remove(conversationChannel(live.conversationId));
              break;
            }
            yield { conversationId: live.conversationId, leavingDeviceId: live.deviceId };
            break;
          }
          case 'key-packages-low':
            yield { deviceId: live.deviceId, available: live.available, lowWater: live.lowWater };
            break;
        }
      }
    } catch (error) {
      // The stream ended early (slow consumer, pub/sub lost): tell the client in a typed way,
      // so that it resumes from its cursors with messages(after:).
      if (error instanceof EventStreamError) {
        throw new GraphQLError(error.message, { extensions: { code: error.code } });
      }
      throw error;
    } finally {
      stream.close();
    }
  }
}
