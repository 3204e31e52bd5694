import { Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';
import { DomainError } from '../common/domain.errors.js';

const PURGE_EVERY_MS = 60_000;
const STALE_AFTER_SECONDS = 10 * 60;

interface WindowRow {
  hits: number;
  retry_after: number | string;
}

/**
 * Fixed-window rate limits kept in the database, so that every server instance counts
 * against the same windows with no other service.
 */
@Injectable()
export class RateLimitService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(RateLimitService.name);
  private timer: NodeJS.Timeout | undefined;

  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  // Windows end after a minute; every instance deletes old ones (idempotent), so the table
  // holds only the current windows however many claimer→target pairs there have been.
  onModuleInit(): void {
    this.timer = setInterval(() => {
      this.purge(this.dataSource.manager, STALE_AFTER_SECONDS).catch((error: unknown) => {
        this.logger.warn(
          `Rate-limit purge failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
    }, PURGE_EVERY_MS);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
  }

  /**
   * Counts one hit against `key` inside the caller's transaction and throws RATE_LIMITED when
   * the window is full. The throw rolls the transaction back, so a rejected call costs nothing.
   */
  async hit(
    manager: EntityManager,
    key: string,
    limit: number,
    windowSeconds: number,
  ): Promise<void> {
    const rows: WindowRow[] = await manager.query(
      `INSERT INTO "rate_limit_windows" ("key", "window_start", "hits") VALUES ($1, now(), 1)
       ON CONFLICT ("key") DO UPDATE SET
         "hits" = CASE WHEN "rate_limit_windows"."window_start" <= now() - make_interval(secs => $2)
                       THEN 1 ELSE "rate_limit_windows"."hits" + 1 END,
         "window_start" = CASE WHEN "rate_limit_windows"."window_start" <= now() - make_interval(secs => $2)
                       THEN now() ELSE "rate_limit_windows"."window_start" END
       RETURNING "hits",
         ceil(extract(epoch FROM "window_start" + make_interval(secs => $2) - now()))::int AS "retry_after"`,
      [key, windowSeconds],
    );
    const row = rows[0];
    if (row !== undefined && row.hits > limit) {
      throw new DomainError('RATE_LIMITED', 'Too many requests; try again later', {
        retryAfterSeconds: Math.max(1, Number(row.retry_after)),
      });
    }
  }

  /** Deletes windows that ended long enough ago to be of no further use. */
  async purge(manager: EntityManager, olderThanSeconds: number): Promise<void> {
    await manager.query(
      `DELETE FROM "rate_limit_windows" WHERE "window_start" < now() - make_interval(secs => $1)`,
      [olderThanSeconds],
    );
  }
}
