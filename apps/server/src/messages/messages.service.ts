import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { inspectMessage } from '@parley/mls';
import { isValidMessageTimer, MESSAGE_TIMER_RANGE } from '@parley/protocol';
import { DataSource } from 'typeorm';
import { DomainError, limitExceeded } from '../common/domain.errors.js';
import { mlsCheck } from '../common/mls-check.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { ConversationMemberEntity } from '../conversations/conversation-member.entity.js';
import { invalidMessage } from '../conversations/conversations.errors.js';
import { ConversationsService } from '../conversations/conversations.service.js';
import { LogEntryEntity } from './log-entry.entity.js';
import { MessageAppender, type PendingMessage } from './message-appender.js';
import type { SendMessageInput, SetMessageTimerInput } from './message.input.js';
import {
  LogEntryKindValue,
  type LogEntryModel,
  type LogGapModel,
  type LogPageModel,
} from './message.model.js';

/** The API view of a log entry. */
export function toLogEntryModel(entry: LogEntryEntity): LogEntryModel {
  return {
    conversationId: entry.conversationId,
    seq: entry.seq,
    kind: LogEntryKindValue[entry.kind],
    epoch: entry.epoch,
    senderDeviceId: entry.senderDeviceId,
    createdAt: entry.createdAt,
    message: entry.data,
    expiresAt: entry.expiresAt,
    timerSeconds: entry.timerSeconds,
  };
}

/** Application messages into the conversation log, and reading the log with cursors. */
@Injectable()
export class MessagesService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly conversations: ConversationsService,
    private readonly appender: MessageAppender,
  ) {}

  /**
   * Stores a PrivateMessage of content type application once for the whole conversation, from a
   * device on the roster, within the epoch window; it gets the next sequence number. Bytes the
   * log already holds (a retry, or a member's replay) get the entry that holds them.
   */
  async send(userId: string, input: SendMessageInput): Promise<LogEntryModel> {
    const entry = await this.appender.append(await this.pending(userId, input));
    return toLogEntryModel(entry);
  }

  /**
   * Changes the conversation's message timer: a TIMER entry in the log, in order with the
   * messages (those after it expire by the new timer), carrying the change as an MLS application
   * message the server cannot read, so members can tell who set it and check `seconds` against
   * it. Checked like any message (size, wire format, sender's seat, group, epoch window);
   * idempotent like one.
   */
  async setTimer(userId: string, input: SetMessageTimerInput): Promise<LogEntryModel> {
    const { seconds } = input;
    if (!isValidMessageTimer(seconds)) {
      throw new DomainError(
        'BAD_USER_INPUT',
        `seconds must be 0 (off) or ${MESSAGE_TIMER_RANGE.min}–${MESSAGE_TIMER_RANGE.max}`,
        { field: 'seconds' },
      );
    }
    const entry = await this.appender.append({
      ...(await this.pending(userId, input)),
      timerSeconds: seconds,
    });
    return toLogEntryModel(entry);
  }

  /**
   * Checks an application message exactly as {@link send} does — size, a PrivateMessage of
   * content type application, the caller's device on the roster, the group, the epoch window —
   * and stores nothing: for ephemeral signals. Rejects with the same typed errors.
   */
  async checkEphemeral(userId: string, input: SendMessageInput): Promise<void> {
    await this.appender.check(await this.pending(userId, input));
  }

  /** The message as the appender takes it, once its bytes passed the MLS wire-format checks. */
  private async pending(userId: string, input: SendMessageInput): Promise<PendingMessage> {
    if (input.message.length > this.config.limits.messageBytes) {
      throw limitExceeded('Message size', this.config.limits.messageBytes);
    }
    const inspected = await mlsCheck(
      () => inspectMessage(input.message, { maxBytes: this.config.limits.messageBytes }),
      (error) => invalidMessage(error.reason, `The message is invalid: ${error.message}`),
    );
    if (inspected.wireFormat !== 'private_message') {
      throw invalidMessage('WRONG_WIRE_FORMAT', 'Application messages travel as PrivateMessage');
    }
    if (inspected.contentType !== 'application') {
      throw invalidMessage('WRONG_CONTENT_TYPE', 'Only application messages are sent this way');
    }
    return {
      userId,
      deviceId: input.deviceId,
      conversationId: input.conversationId,
      groupId: inspected.groupId,
      epoch: inspected.epoch,
      data: input.message,
      digest: createHash('sha256').update(input.message).digest(),
    };
  }

  /**
   * Up to `first` log entries after `after`, in order, never at or before the device's join point
   * (the entry that added it): what came before is not the device's to read, and `after` below
   * it simply starts there — no gap marker, since nothing the device could read was lost. When
   * retention deleted entries the device could have read, the page starts with a gap marker
   * instead of silently skipping them.
   */
  async page(
    userId: string,
    deviceId: string,
    conversationId: string,
    after: string,
    first: number,
  ): Promise<LogPageModel> {
    if (first < 1 || first > this.config.limits.pageSize) {
      throw new DomainError('BAD_USER_INPUT', `first must be 1–${this.config.limits.pageSize}`);
    }
    return this.dataSource.transaction(async (manager) => {
      const { conversation, seat } = await this.conversations.membership(
        manager,
        userId,
        deviceId,
        conversationId,
      );
      const retainedFrom = BigInt(conversation.retainedFromSeq);
      const joined = BigInt(seat.joinedSeq);
      const from = (BigInt(after) > joined ? BigInt(after) : joined) + 1n;
      const gap =
        from < retainedFrom && from <= BigInt(conversation.lastSeq)
          ? { fromSeq: from.toString(), toSeq: (retainedFrom - 1n).toString() }
          : null;
      const start = (from < retainedFrom ? retainedFrom : from) - 1n;
      // Past their expiry, bytes are never served, even before the sweeper deleted them.
      const entries = await manager
        .createQueryBuilder(LogEntryEntity, 'entry')
        .where('entry.conversationId = :conversationId', { conversationId })
        .andWhere('entry.seq > :start', { start: start.toString() })
        .andWhere('(entry.expiresAt IS NULL OR entry.expiresAt > clock_timestamp())')
        .orderBy('entry.seq', 'ASC')
        .take(first + 1)
        .getMany();
      const page = entries.slice(0, first);
      const hasMore = entries.length > first;
      return {
        gap,
        expired: expiredRanges(start, page, hasMore ? null : BigInt(conversation.lastSeq)),
        entries: page.map(toLogEntryModel),
        hasMore,
        lastSeq: conversation.lastSeq,
      };
    });
  }

  /**
   * What a live stream reads when entries are missing: the page after `after` (checked and
   * starting at the join point like any page), and the `seq` it covers — anything up to there
   * that it does not hold does not exist for the device. Null once the device is not a member.
   */
  async readMissing(
    userId: string,
    deviceId: string,
    conversationId: string,
    after: bigint,
  ): Promise<{ entries: LogEntryModel[]; expired: LogGapModel[]; covered: bigint } | null> {
    let page: LogPageModel;
    try {
      page = await this.page(
        userId,
        deviceId,
        conversationId,
        after.toString(),
        this.config.limits.pageSize,
      );
    } catch (error) {
      if (error instanceof DomainError && ['NOT_A_MEMBER', 'NOT_FOUND'].includes(error.code)) {
        return null;
      }
      throw error;
    }
    const last = page.entries.at(-1);
    const covered = page.hasMore && last !== undefined ? last.seq : page.lastSeq;
    return { entries: page.entries, expired: page.expired, covered: BigInt(covered) };
  }

  /** Moves the device's cursor forward (never back) to `seq`, at most the newest entry. */
  async acknowledge(
    userId: string,
    deviceId: string,
    conversationId: string,
    seq: string,
  ): Promise<string> {
    return this.dataSource.transaction(async (manager) => {
      const { conversation, seat } = await this.conversations.membership(
        manager,
        userId,
        deviceId,
        conversationId,
      );
      if (BigInt(seq) > BigInt(conversation.lastSeq)) {
        throw new DomainError(
          'BAD_USER_INPUT',
          `seq is past the newest entry (${conversation.lastSeq})`,
        );
      }
      if (BigInt(seq) <= BigInt(seat.ackedSeq)) return seat.ackedSeq;
      await manager.update(
        ConversationMemberEntity,
        { conversationId, deviceId: seat.deviceId },
        { ackedSeq: seq },
      );
      return seq;
    });
  }
}

/**
 * The ranges of a page that the timer deleted: within the retained part of the log seqs have no
 * other holes, so every seq missing between `start` and the page's entries (and, on the last
 * page, up to `lastSeq`) was an application message that expired.
 */
export function expiredRanges(
  start: bigint,
  entries: readonly { seq: string }[],
  lastSeq: bigint | null,
): { fromSeq: string; toSeq: string }[] {
  const ranges: { fromSeq: string; toSeq: string }[] = [];
  let expected = start + 1n;
  const hole = (below: bigint) => {
    if (below > expected)
      ranges.push({ fromSeq: expected.toString(), toSeq: (below - 1n).toString() });
  };
  for (const entry of entries) {
    const seq = BigInt(entry.seq);
    hole(seq);
    expected = seq + 1n;
  }
  if (lastSeq !== null) hole(lastSeq + 1n);
  return ranges;
}
