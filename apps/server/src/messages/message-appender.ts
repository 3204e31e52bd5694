import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';
import { notFound } from '../common/domain.errors.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { ConversationEntity } from '../conversations/conversation.entity.js';
import { invalidMessage, notAMember } from '../conversations/conversations.errors.js';
import { DevicesService } from '../devices/devices.service.js';
import { EventBus } from '../events/event-bus.js';
import { conversationChannel } from '../live/live-event.js';
import { publishCommitted } from '../live/publish.js';
import { LogEntryEntity } from './log-entry.entity.js';

/** An application message waiting for its place in the log. */
export interface PendingMessage {
  userId: string;
  deviceId: string;
  conversationId: string;
  groupId: Uint8Array;
  epoch: bigint;
  data: Buffer;
}

interface Waiter extends PendingMessage {
  resolve: (entry: LogEntryEntity) => void;
  reject: (error: unknown) => void;
}

// Enough to amortise a transaction over many messages, small enough to keep each one short.
const MAX_BATCH = 256;

/**
 * Appends application messages to conversation logs in batches ("group commit"): while one
 * transaction for a conversation runs, new messages for it queue up, and the next transaction
 * takes them all — one counter bump and one multi-row insert for the batch. A single hot
 * conversation then costs a transaction per batch, not per message. Order is the queue's order;
 * the row lock on the conversation keeps several instances (and commits) correctly interleaved.
 */
@Injectable()
export class MessageAppender {
  private readonly queues = new Map<string, Waiter[]>();
  private readonly logger = new Logger(MessageAppender.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly devices: DevicesService,
    private readonly events: EventBus,
    @Inject(CONFIG) private readonly config: Config,
  ) {}

  /** Resolves with the stored entry once its batch committed, or rejects with a domain error. */
  append(message: PendingMessage): Promise<LogEntryEntity> {
    return new Promise((resolve, reject) => {
      const queue = this.queues.get(message.conversationId);
      if (queue !== undefined) {
        queue.push({ ...message, resolve, reject });
        return;
      }
      this.queues.set(message.conversationId, [{ ...message, resolve, reject }]);
      void this.drain(message.conversationId);
    });
  }

  private async drain(conversationId: string): Promise<void> {
    const queue = this.queues.get(conversationId) ?? [];
    while (queue.length > 0) {
      const batch = queue.splice(0, MAX_BATCH);
      try {
        const stored = await this.dataSource.transaction((manager) =>
          this.write(manager, conversationId, batch),
        );
        // Only now, committed, do senders hear of success and subscribers of the entries.
        for (const { waiter, entry } of stored) waiter.resolve(entry);
        await publishCommitted(
          this.events,
          this.logger,
          stored.map(({ entry }) => ({
            channel: conversationChannel(conversationId),
            event: {
              type: 'message',
              conversationId,
              seq: entry.seq,
              kind: 'APPLICATION',
              epoch: entry.epoch,
              senderDeviceId: entry.senderDeviceId,
              createdAt: entry.createdAt,
              data: entry.data.toString('base64'),
            },
          })),
        );
      } catch (error) {
        for (const waiter of batch) waiter.reject(error);
      }
    }
    this.queues.delete(conversationId);
  }

  /** One transaction for the batch: rejects the waiters it must, returns the entries it stored. */
  private async write(
    manager: EntityManager,
    conversationId: string,
    batch: Waiter[],
  ): Promise<{ waiter: Waiter; entry: LogEntryEntity }[]> {
    const conversation = await manager.findOne(ConversationEntity, {
      select: { id: true, groupId: true, epoch: true, lastSeq: true },
      where: { id: conversationId },
      lock: { mode: 'pessimistic_write' },
    });
    if (conversation === null) {
      for (const waiter of batch) waiter.reject(notFound('Conversation'));
      return [];
    }
    // One roster query per batch, whatever the group size: the senders' seats and owners.
    const senders: { device_id: string; user_id: string }[] = await manager.query(
      `SELECT m."device_id", d."user_id" FROM "conversation_members" m
         JOIN "devices" d ON d."id" = m."device_id"
        WHERE m."conversation_id" = $1 AND m."device_id" = ANY($2::text[]) AND NOT m."leaving"`,
      [conversationId, [...new Set(batch.map((waiter) => waiter.deviceId))]],
    );
    const ownerOf = new Map(senders.map((row) => [row.device_id, row.user_id]));
    const epoch = BigInt(conversation.epoch);
    let seq = BigInt(conversation.lastSeq);
    const accepted: { waiter: Waiter; entry: LogEntryEntity }[] = [];
    for (const waiter of batch) {
      const owner = ownerOf.get(waiter.deviceId);
      if (owner !== waiter.userId) {
        waiter.reject(
          owner === undefined ? await this.whyNotMember(manager, waiter) : notAMember(),
        );
        continue;
      }
      if (!conversation.groupId.equals(waiter.groupId)) {
        waiter.reject(invalidMessage('WRONG_GROUP', 'The message is for another group'));
        continue;
      }
      if (waiter.epoch > epoch || waiter.epoch < epoch - BigInt(this.config.messageEpochWindow)) {
        waiter.reject(
          invalidMessage(
            'EPOCH_OUT_OF_WINDOW',
            `Messages must be for epochs ${epoch - BigInt(this.config.messageEpochWindow)} to ${epoch}; this one is for ${waiter.epoch}`,
          ),
        );
        continue;
      }
      seq += 1n;
      accepted.push({
        waiter,
        entry: manager.create(LogEntryEntity, {
          conversationId,
          seq: seq.toString(),
          kind: 'APPLICATION',
          epoch: waiter.epoch.toString(),
          senderDeviceId: waiter.deviceId,
          data: waiter.data,
        }),
      });
    }
    if (accepted.length === 0) return [];
    await manager.update(ConversationEntity, { id: conversationId }, { lastSeq: seq.toString() });
    await manager.insert(
      LogEntryEntity,
      accepted.map(({ entry }) => entry),
    );
    return accepted;
  }

  /** The precise reason a device may not post: not the caller's, gone, or not on the roster. */
  private async whyNotMember(manager: EntityManager, waiter: Waiter): Promise<unknown> {
    try {
      await this.devices.owned(manager, waiter.userId, waiter.deviceId);
      return notAMember();
    } catch (error) {
      return error;
    }
  }
}
