import { randomUUID } from 'node:crypto';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';
import { DomainError, limitExceeded, notFound } from '../common/domain.errors.js';
import { isUuid } from '../common/uuid.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { ConversationsService } from '../conversations/conversations.service.js';
import { rolesOf } from '../conversations/roles.js';
import { adminRequired } from '../conversations/roles.checks.js';
import { isUniqueViolation } from '../database/errors.js';
import { EventBus } from '../events/event-bus.js';
import { type Publication, publishCommitted } from '../live/publish.js';
import { callPublication, callViews, leaveCalls } from './call-roster.js';
import type { CallDeviceInput, StartCallInput } from './call.input.js';
import { CallChangeValue, type CallModel, type IceServerModel } from './call.model.js';

/** The call has ended (or never was): nothing more can happen in it. */
const callEnded = (callId: string) =>
  new DomainError('NOT_FOUND', 'The call has ended', { callId, reason: 'CALL_ENDED' });

/**
 * Call state: one running call per conversation, its participants, and their heartbeats. Only
 * devices on the conversation's roster take part; one removed from the conversation (or deleted)
 * is dropped from its calls in the same transaction (see call-roster.ts). Every change is a live
 * event on the conversation's channel, from whichever instance made it. The server never sees
 * media or keys: media is SFrame-encrypted with keys from the MLS group, and signalling (SDP,
 * ICE) travels as ephemeral MLS messages.
 */
@Injectable()
export class CallsService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(CallsService.name);
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly conversations: ConversationsService,
    private readonly events: EventBus,
  ) {}

  /** Every instance drops silent participants; the statement is idempotent across instances. */
  onApplicationBootstrap(): void {
    const every = Math.max(1, Math.floor(this.config.calls.heartbeatTimeoutSeconds / 3)) * 1000;
    this.timer = setInterval(() => {
      this.dropSilent().catch((error: unknown) => {
        this.logger.error(
          `Dropping silent call participants failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
    }, every);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
  }

  /** Starts a call: the caller's device is its first participant; the others' devices ring. */
  async start(userId: string, input: StartCallInput): Promise<CallModel> {
    return this.change(async (manager) => {
      const { seat } = await this.conversations.membership(
        manager,
        userId,
        input.deviceId,
        input.conversationId,
      );
      const id = randomUUID();
      try {
        // A savepoint: a losing race leaves the transaction usable to name the winner.
        await manager.transaction(async (inner) => {
          await inner.query(
            `INSERT INTO "calls" ("id", "conversation_id", "media", "started_by_device_id")
             VALUES ($1, $2, $3, $4)`,
            [id, input.conversationId, input.media, seat.deviceId],
          );
          await inner.query(
            `INSERT INTO "call_participants" ("call_id", "device_id") VALUES ($1, $2)`,
            [id, seat.deviceId],
          );
        });
      } catch (error) {
        if (!isUniqueViolation(error)) throw error;
        const running: { id: string }[] = await manager.query(
          `SELECT "id" FROM "calls" WHERE "conversation_id" = $1 AND "ended_at" IS NULL`,
          [input.conversationId],
        );
        throw new DomainError('CONFLICT', 'A call is already running in this conversation', {
          reason: 'CALL_RUNNING',
          callId: running[0]?.id ?? null,
        });
      }
      const call = await this.view(manager, id);
      return {
        call,
        publications: [callPublication(call, CallChangeValue.STARTED, seat.deviceId)],
      };
    });
  }

  /** Joins a running call (again: idempotent, a heartbeat). */
  async join(userId: string, input: CallDeviceInput): Promise<CallModel> {
    return this.change(async (manager) => {
      const { call, deviceId } = await this.callOfMember(manager, userId, input, { running: true });
      if (call.participants.some((p) => p.deviceId === deviceId)) {
        await this.touch(manager, call.id, deviceId);
        return { call, publications: [] };
      }
      const limit = this.config.calls.maxParticipants;
      if (call.participants.length >= limit) throw limitExceeded('Participants per call', limit);
      await manager.query(
        `INSERT INTO "call_participants" ("call_id", "device_id") VALUES ($1, $2)
         ON CONFLICT ("call_id", "device_id") DO UPDATE SET "last_seen_at" = now()`,
        [call.id, deviceId],
      );
      const joined = await this.view(manager, call.id);
      return {
        call: joined,
        publications: [callPublication(joined, CallChangeValue.JOINED, deviceId)],
      };
    });
  }

  /**
   * "Still here": a participant that stops sending these for the configured timeout is dropped
   * (LEFT), and the call ends with its last participant.
   */
  async heartbeat(userId: string, input: CallDeviceInput): Promise<CallModel> {
    return this.change(async (manager) => {
      const { call, deviceId } = await this.callOfMember(manager, userId, input, { running: true });
      if (!call.participants.some((p) => p.deviceId === deviceId)) {
        throw new DomainError('NOT_FOUND', 'This device is not in the call; join it first', {
          callId: call.id,
          reason: 'NOT_A_PARTICIPANT',
        });
      }
      await this.touch(manager, call.id, deviceId);
      return { call, publications: [] };
    });
  }

  /** Leaves a call (idempotent, also once it ended); the last one out ends it. */
  async leave(userId: string, input: CallDeviceInput): Promise<CallModel> {
    return this.change(async (manager) => {
      const { call, deviceId } = await this.callOfMember(manager, userId, input, {
        running: false,
      });
      const publications = await leaveCalls(manager, `c."id" = $1 AND p."device_id" = $2`, [
        call.id,
        deviceId,
      ]);
      return { call: await this.view(manager, call.id), publications };
    });
  }

  /** Ends a call for everyone: its starter's user, or an admin of the conversation. */
  async end(userId: string, input: CallDeviceInput): Promise<CallModel> {
    return this.change(async (manager) => {
      const { call, deviceId } = await this.callOfMember(manager, userId, input, {
        running: false,
      });
      if (call.endedAt !== null) return { call, publications: [] };
      const starter: { user_id: string }[] = await manager.query(
        `SELECT "user_id" FROM "devices" WHERE "id" = $1`,
        [call.startedByDeviceId],
      );
      const roles = await rolesOf(manager, call.conversationId);
      if (starter[0]?.user_id !== userId && roles.get(userId) !== 'ADMIN') {
        throw adminRequired(
          'Only the user who started the call or an admin can end it for everyone',
        );
      }
      await manager.query(`UPDATE "calls" SET "ended_at" = now() WHERE "id" = $1`, [call.id]);
      await manager.query(`DELETE FROM "call_participants" WHERE "call_id" = $1`, [call.id]);
      const ended = await this.view(manager, call.id);
      return {
        call: ended,
        publications: [callPublication(ended, CallChangeValue.ENDED, deviceId)],
      };
    });
  }

  /** The conversation's running call, or null; for members only. */
  async running(
    userId: string,
    deviceId: string,
    conversationId: string,
  ): Promise<CallModel | null> {
    return this.dataSource.transaction(async (manager) => {
      await this.conversations.membership(manager, userId, deviceId, conversationId);
      const rows: { id: string }[] = await manager.query(
        `SELECT "id" FROM "calls" WHERE "conversation_id" = $1 AND "ended_at" IS NULL`,
        [conversationId],
      );
      const id = rows[0]?.id;
      return id === undefined ? null : this.view(manager, id);
    });
  }

  /** The STUN/TURN servers clients should use, from the configuration. */
  iceServers(): IceServerModel[] {
    return this.config.calls.iceServers.map((server) => ({
      urls: server.urls,
      username: server.username ?? null,
      credential: server.credential ?? null,
    }));
  }

  /** Drops participants whose last heartbeat is older than the timeout; returns how many. */
  async dropSilent(): Promise<number> {
    const publications = await this.dataSource.transaction((manager) =>
      leaveCalls(manager, `p."last_seen_at" < now() - make_interval(secs => $1)`, [
        this.config.calls.heartbeatTimeoutSeconds,
      ]),
    );
    await publishCommitted(this.events, this.logger, publications);
    return publications.filter(
      (p) => p.event.type === 'call' && p.event.change === CallChangeValue.LEFT,
    ).length;
  }

  /** Runs one change in a transaction and publishes its events once committed. */
  private async change(
    work: (manager: EntityManager) => Promise<{ call: CallModel; publications: Publication[] }>,
  ): Promise<CallModel> {
    const { call, publications } = await this.dataSource.transaction(work);
    await publishCommitted(this.events, this.logger, publications);
    return call;
  }

  /**
   * The call and the caller's device, which must hold a seat in the call's conversation; with
   * `running`, a call that has ended is refused (CALL_ENDED).
   */
  private async callOfMember(
    manager: EntityManager,
    userId: string,
    input: CallDeviceInput,
    { running }: { running: boolean },
  ): Promise<{ call: CallModel; deviceId: string }> {
    const call = await this.view(manager, input.callId);
    const { seat } = await this.conversations.membership(
      manager,
      userId,
      input.deviceId,
      call.conversationId,
    );
    if (running && call.endedAt !== null) throw callEnded(call.id);
    return { call, deviceId: seat.deviceId };
  }

  private async touch(manager: EntityManager, callId: string, deviceId: string): Promise<void> {
    await manager.query(
      `UPDATE "call_participants" SET "last_seen_at" = now() WHERE "call_id" = $1 AND "device_id" = $2`,
      [callId, deviceId],
    );
  }

  private async view(manager: EntityManager, callId: string): Promise<CallModel> {
    const call = isUuid(callId) ? (await callViews(manager, [callId])).get(callId) : undefined;
    if (call === undefined) throw notFound('Call');
    return call;
  }
}
