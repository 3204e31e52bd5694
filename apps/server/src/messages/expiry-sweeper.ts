import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { Metrics } from '../metrics/metrics.js';

/** Rows per DELETE: short statements, so that several sweepers interleave and none holds locks long. */
const BATCH = 1_000;
/**
 * Sweeps at most this often: under steady traffic expiries are continuous, and waking for each
 * would cost a statement per message. It bounds the lateness this adds.
 */
const MIN_GAP_MS = 50;
/**
 * Looks at the database at least this often, for expiries appended by another instance that has
 * since stopped (each instance otherwise wakes for its own appends, and for the earliest expiry
 * it saw in the database at its last sweep).
 */
const POLL_MS = 2_000;
/** After a failed sweep (database unreachable), the next try. */
const RETRY_MS = 1_000;

/** What one sweep deleted. */
export interface SweepResult {
  deleted: number;
  /** Per deleted row, milliseconds from its expiry to its deletion (database clock). */
  latenessMs: number[];
}

/**
 * Deletes application messages whose timer has run out, on time: it wakes at the earliest expiry
 * it knows of (the database's, and those of entries this instance just appended) and deletes
 * every row due, in batches, by the partial index on `expires_at`. Every instance runs one; rows
 * are claimed with `FOR UPDATE SKIP LOCKED`, so two sweepers at once split the work instead of
 * doing it twice or waiting on each other. A plain SQL loop rather than a job runner (pg-boss,
 * graphile-worker): the work is one indexed DELETE, a job per message would cost more than the
 * deletion itself, and PGlite (the embedded database) runs neither.
 *
 * The sweeper deletes the bytes; readers never see them past their expiry even before it runs
 * (pages filter on `expires_at`, live streams drop expired events on their way out).
 */
@Injectable()
export class ExpirySweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(ExpirySweeper.name);
  private timer: NodeJS.Timeout | undefined;
  /** Local time of the armed wake-up; Infinity when none. */
  private wakeAt = Number.POSITIVE_INFINITY;
  private running: Promise<void> | null = null;
  private lastSweep = 0;
  /** Database clock minus local clock, from the last look at the database. */
  private skewMs = 0;
  private stopped = false;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(CONFIG) private readonly config: Config,
    private readonly metrics: Metrics,
  ) {}

  /** Whatever expired while no instance ran is deleted at start. */
  onApplicationBootstrap(): void {
    this.arm(Date.now());
  }

  onModuleDestroy(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /**
   * Entries this instance just appended: the sweeper wakes for the first of their expiries, if it
   * is earlier than its next wake-up.
   */
  expect(entries: readonly { expiresAt: Date | null }[]): void {
    let first = Number.POSITIVE_INFINITY;
    for (const entry of entries) {
      if (entry.expiresAt !== null) first = Math.min(first, entry.expiresAt.getTime());
    }
    if (first !== Number.POSITIVE_INFINITY) this.arm(first - this.skewMs);
  }

  /**
   * Deletes every application message due now, batch after batch, keeping the digest of those
   * whose epoch is still in the window (so that a late retry of the same bytes is answered with
   * the original entry, not stored again). Returns what it deleted.
   */
  async sweep(): Promise<SweepResult> {
    const result: SweepResult = { deleted: 0, latenessMs: [] };
    for (;;) {
      const rows: { late_ms: string | number }[] = await this.dataSource.query(
        `WITH "due" AS (
           SELECT "conversation_id", "seq" FROM "log_entries"
            WHERE "expires_at" <= now()
            ORDER BY "expires_at"
            LIMIT $1
            FOR UPDATE SKIP LOCKED
         ), "deleted" AS (
           DELETE FROM "log_entries" l USING "due" d
            WHERE l."conversation_id" = d."conversation_id" AND l."seq" = d."seq"
           RETURNING l."conversation_id", l."seq", l."epoch", l."sender_device_id", l."created_at",
                     l."digest", l."expires_at"
         ), "kept" AS (
           INSERT INTO "log_entry_digests"
             ("conversation_id", "digest", "seq", "epoch", "sender_device_id", "created_at")
           SELECT d."conversation_id", d."digest", d."seq", d."epoch", d."sender_device_id", d."created_at"
             FROM "deleted" d JOIN "conversations" c ON c."id" = d."conversation_id"
            WHERE d."digest" IS NOT NULL AND d."epoch" >= c."epoch" - $2
           ON CONFLICT DO NOTHING
         )
         SELECT EXTRACT(EPOCH FROM clock_timestamp() - "expires_at") * 1000 AS "late_ms" FROM "deleted"`,
        [BATCH, this.config.messageEpochWindow],
      );
      for (const row of rows) {
        const late = Number(row.late_ms);
        result.latenessMs.push(late);
        this.metrics.expiryLateness.observe(late / 1000);
      }
      result.deleted += rows.length;
      if (rows.length < BATCH) return result;
    }
  }

  /** Arms the wake-up for local time `at`, unless an earlier one is armed. */
  private arm(at: number): void {
    if (this.stopped || at >= this.wakeAt) return;
    clearTimeout(this.timer);
    this.wakeAt = at;
    const delay = Math.max(at - Date.now(), this.lastSweep + MIN_GAP_MS - Date.now(), 0);
    this.timer = setTimeout(() => {
      this.wakeAt = Number.POSITIVE_INFINITY;
      void this.run();
    }, delay);
    this.timer.unref();
  }

  /** One sweep, then the next wake-up: the earliest expiry left, or the next look. */
  private async run(): Promise<void> {
    if (this.running !== null) {
      // A wake-up during a sweep: look again right after it.
      await this.running;
      this.arm(Date.now());
      return;
    }
    let next = Date.now() + POLL_MS;
    this.running = (async () => {
      try {
        await this.sweep();
        this.lastSweep = Date.now();
        const earliest = await this.earliestExpiry();
        if (earliest !== null) next = Math.min(next, earliest);
      } catch (error) {
        next = Date.now() + RETRY_MS;
        this.logger.error(
          `Deleting expired messages failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    })();
    await this.running;
    this.running = null;
    this.arm(next);
  }

  /** Local time of the earliest expiry still stored, or null; updates the clock skew. */
  private async earliestExpiry(): Promise<number | null> {
    const [row]: { earliest: Date | null; now: Date }[] = await this.dataSource.query(
      `SELECT min("expires_at") AS "earliest", clock_timestamp() AS "now"
         FROM "log_entries" WHERE "expires_at" IS NOT NULL`,
    );
    if (row === undefined) return null;
    this.skewMs = new Date(row.now).getTime() - Date.now();
    return row.earliest === null ? null : new Date(row.earliest).getTime() - this.skewMs;
  }
}
