import {
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { purgeClaimedKeyPackages } from '../key-packages/claimed-key-packages.js';

const EVERY_MINUTE = 60_000;

/**
 * Part of the deleting statements (an `"expired"` CTE names each conversation and the last seq
 * deleted; `window` is the parameter holding the epoch window): keeps the digest and place of each deleted
 * application message whose epoch is still within the window, so that sending its bytes again
 * is answered with the original entry for as long as such bytes could be accepted at all.
 * Data-modifying CTEs share one snapshot, so this reads the rows the same statement deletes.
 */
const keepDigests = (window: string) => `
  INSERT INTO "log_entry_digests" ("conversation_id", "digest", "seq", "epoch", "sender_device_id", "created_at")
  SELECT l."conversation_id", l."digest", l."seq", l."epoch", l."sender_device_id", l."created_at"
    FROM "log_entries" l
    JOIN "expired" e ON l."conversation_id" = e."conversation_id" AND l."seq" <= e."upto"
    JOIN "conversations" c ON c."id" = l."conversation_id"
   WHERE l."digest" IS NOT NULL AND l."epoch" >= c."epoch" - ${window}
  ON CONFLICT DO NOTHING`;

/**
 * Deletes conversation log entries past the retention period and records, per conversation, the
 * oldest sequence number still stored, so that readers further behind get a gap marker; and, on
 * the same minute tick, key packages claimed longer ago than their retention. Every instance runs
 * it; the statements are idempotent, so running twice at once is harmless.
 */
@Injectable()
export class RetentionService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(RetentionService.name);
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @InjectDataSource() private readonly dataSource: DataSource,
  ) {}

  onModuleInit(): void {
    const { logRetentionSeconds, claimedKeyPackageRetentionDays } = this.config;
    if (logRetentionSeconds === 0 && claimedKeyPackageRetentionDays === 0) return;
    this.timer = setInterval(() => {
      void this.sweep();
    }, EVERY_MINUTE);
    this.timer.unref();
  }

  /** One tick: each purge that is configured, the log first; one failing does not stop the other. */
  async sweep(): Promise<void> {
    const failed = (error: unknown) => {
      this.logger.error(
        `Retention failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    };
    if (this.config.logRetentionSeconds !== 0) await this.purgeExpired().catch(failed);
    if (this.config.claimedKeyPackageRetentionDays !== 0) {
      await this.purgeClaimedKeyPackages().catch(failed);
    }
  }

  /** Deletes key packages claimed longer ago than their retention (0: none); returns how many. */
  async purgeClaimedKeyPackages(): Promise<number> {
    const days = this.config.claimedKeyPackageRetentionDays;
    return days === 0 ? 0 : purgeClaimedKeyPackages(this.dataSource, days);
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
  }

  /** Deletes every entry older than the retention period. */
  async purgeExpired(): Promise<void> {
    await this.dataSource.query(
      `WITH "expired" AS (
         SELECT "conversation_id", max("seq") AS "upto" FROM "log_entries"
          WHERE "created_at" < now() - make_interval(secs => $1)
          GROUP BY "conversation_id"
       ), "moved" AS (
         UPDATE "conversations" c SET "retained_from_seq" = GREATEST(c."retained_from_seq", e."upto" + 1)
           FROM "expired" e WHERE c."id" = e."conversation_id"
       ), "kept" AS (${keepDigests('$2')})
       DELETE FROM "log_entries" l USING "expired" e
        WHERE l."conversation_id" = e."conversation_id" AND l."seq" <= e."upto"`,
      [this.config.logRetentionSeconds, this.config.messageEpochWindow],
    );
    await this.forgetDigestsOutsideWindow();
  }

  /** Deletes a conversation's entries up to and including `seq`. */
  async deleteThrough(conversationId: string, seq: string): Promise<void> {
    await this.dataSource.query(
      `WITH "expired" AS (
         SELECT $1::uuid AS "conversation_id", $2::bigint AS "upto"
       ), "moved" AS (
         UPDATE "conversations" SET "retained_from_seq" = GREATEST("retained_from_seq", $2::bigint + 1)
          WHERE "id" = $1
       ), "kept" AS (${keepDigests('$3')})
       DELETE FROM "log_entries" WHERE "conversation_id" = $1 AND "seq" <= $2::bigint`,
      [conversationId, seq, this.config.messageEpochWindow],
    );
    await this.forgetDigestsOutsideWindow();
  }

  /** Digests of epochs the window has left: such bytes are refused anyway, new or not. */
  private async forgetDigestsOutsideWindow(): Promise<void> {
    await this.dataSource.query(
      `DELETE FROM "log_entry_digests" d USING "conversations" c
        WHERE d."conversation_id" = c."id" AND d."epoch" < c."epoch" - $1`,
      [this.config.messageEpochWindow],
    );
  }
}
