import {
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { EventBus } from '../events/event-bus.js';
import type { EventStream } from '../events/event-stream.js';

/** The bus channel on which every instance hears that a user's tokens changed. */
export const REVOCATIONS_CHANNEL = 'auth:revocations';

/** Published after a signOut or signOutEverywhere committed. */
export interface TokensRevokedEvent {
  type: 'tokens-revoked';
  userId: string;
}

/** What decides whether a user's token is still good, as the database holds it. */
export interface UserTokenState {
  /** Parley's tokens must carry exactly this generation. */
  generation: number;
  /** App JWTs issued (`iat`, seconds) at or before this are refused; null if never. */
  revokedBefore: number | null;
  /** Token ids (jti, or the token's digest) revoked one at a time and not yet expired. */
  revokedIds: ReadonlySet<string>;
}

// A cached state older than this is read again, so that a lost bus event costs at most this
// much staleness on other instances (the instance that revoked knows at once).
const MAX_AGE_MS = 30_000;
// Users whose state one instance keeps; the least recently used go first.
const MAX_CACHED_USERS = 100_000;
const PURGE_EVERY_MS = 60 * 60 * 1000;
const RESUBSCRIBE_AFTER_MS = 1000;

interface Cached {
  state: UserTokenState;
  loadedAt: number;
}

/**
 * Revoked tokens (signOut) and token generations (signOutEverywhere), checked on every request
 * without a database query in the common case: each instance caches a user's state in memory
 * and drops it when any instance publishes `tokens-revoked` for that user.
 *
 * Why the cache is safe: an instance caches only while its subscription to the revocations
 * channel is live (a failed stream clears the cache and nothing is cached until it is live
 * again); a read that raced an invalidation is not cached; the instance that revokes drops its
 * entry before it answers; and every entry is read again after 30 s, which bounds the damage of
 * an event lost between instances.
 */
@Injectable()
export class TokenRevocations implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(TokenRevocations.name);
  private readonly cache = new Map<string, Cached>();
  private readonly listeners = new Set<(userId: string | null) => void>();
  /** Whether revocation events may have been lost since the channel was last live. */
  private interrupted = false;
  private stream: EventStream | null = null;
  private live = false;
  private stopped = false;
  /** Bumped on every invalidation: a read that started before one must not be cached. */
  private invalidations = 0;
  private purgeTimer: NodeJS.Timeout | undefined;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly bus: EventBus,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.follow();
    this.purgeTimer = setInterval(() => {
      this.purge().catch((error: unknown) => {
        this.logger.warn(
          `Revoked-token purge failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
    }, PURGE_EVERY_MS);
    this.purgeTimer.unref();
  }

  onModuleDestroy(): void {
    this.stopped = true;
    clearInterval(this.purgeTimer);
    this.stream?.close();
  }

  /**
   * Calls `listener` with the user id whenever a user's tokens are revoked (any instance), and
   * with null when revocations of any user may have been missed (the channel was interrupted).
   */
  onRevoked(listener: (userId: string | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The user's token state: from memory when fresh, else one query. Null for no such user. */
  async state(userId: string): Promise<UserTokenState | null> {
    const cached = this.cache.get(userId);
    if (cached !== undefined && Date.now() - cached.loadedAt < MAX_AGE_MS) {
      // Re-inserting keeps the Map in least-recently-used order.
      this.cache.delete(userId);
      this.cache.set(userId, cached);
      return cached.state;
    }
    const before = this.invalidations;
    const state = await this.load(userId);
    if (state !== null && this.live && before === this.invalidations) {
      this.cache.delete(userId);
      this.cache.set(userId, { state, loadedAt: Date.now() });
      if (this.cache.size > MAX_CACHED_USERS) {
        const oldest = this.cache.keys().next();
        if (oldest.done !== true) this.cache.delete(oldest.value);
      }
    }
    return state;
  }

  /**
   * The user's token generation as the database holds it now, for issuing: a cached one could
   * predate a signOutEverywhere that another instance just committed, and the new token would be
   * dead on arrival.
   */
  async currentGeneration(userId: string): Promise<number> {
    return (await this.load(userId))?.generation ?? 0;
  }

  /** Revokes one token until it expires. */
  async revokeToken(userId: string, tokenId: string, expiresAt: Date): Promise<void> {
    await this.dataSource.query(
      `INSERT INTO "revoked_tokens" ("token_id", "user_id", "expires_at") VALUES ($1, $2, $3)
       ON CONFLICT ("token_id") DO NOTHING`,
      [tokenId, userId, expiresAt],
    );
    await this.revoked(userId);
  }

  /** Revokes every token of the user issued until now (Parley's by generation, apps' by iat). */
  async revokeAll(userId: string): Promise<void> {
    await this.dataSource.query(
      `UPDATE "users" SET "token_generation" = "token_generation" + 1, "tokens_revoked_at" = now()
       WHERE "id" = $1`,
      [userId],
    );
    await this.revoked(userId);
  }

  /** Deletes denylist rows of tokens that have expired (they fail verification anyway). */
  async purge(): Promise<void> {
    await this.dataSource.query(`DELETE FROM "revoked_tokens" WHERE "expires_at" < now()`);
  }

  /** After a revocation committed: this instance forgets at once, the others when they hear. */
  private async revoked(userId: string): Promise<void> {
    this.invalidate(userId);
    const event: TokensRevokedEvent = { type: 'tokens-revoked', userId };
    try {
      await this.bus.publish(REVOCATIONS_CHANNEL, event);
    } catch (error) {
      // Stored: other instances catch up within MAX_AGE_MS, or at once if their stream broke.
      this.logger.warn(
        `Could not publish tokens-revoked: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  private invalidate(userId: string): void {
    this.invalidations += 1;
    this.cache.delete(userId);
    for (const listener of this.listeners) listener(userId);
  }

  private async load(userId: string): Promise<UserTokenState | null> {
    const rows: {
      token_generation: number;
      revoked_before: string | number | null;
      revoked_ids: string[] | null;
    }[] = await this.dataSource.query(
      `SELECT u."token_generation",
              floor(extract(epoch FROM u."tokens_revoked_at"))::bigint AS "revoked_before",
              array_remove(array_agg(r."token_id"), NULL) AS "revoked_ids"
         FROM "users" u
         LEFT JOIN "revoked_tokens" r ON r."user_id" = u."id" AND r."expires_at" > now()
        WHERE u."id" = $1
        GROUP BY u."id"`,
      [userId],
    );
    const [row] = rows;
    if (row === undefined) return null;
    return {
      generation: row.token_generation,
      revokedBefore: row.revoked_before === null ? null : Number(row.revoked_before),
      revokedIds: new Set(row.revoked_ids ?? []),
    };
  }

  /** Follows the revocations channel; while it is not live, nothing is cached. */
  private async follow(): Promise<void> {
    if (this.stopped) return;
    const stream = this.bus.open([REVOCATIONS_CHANNEL]);
    this.stream = stream;
    try {
      await stream.ready();
      this.live = !stream.closed;
    } catch {
      // The loop below sees the same failure and schedules another attempt.
    }
    if (this.live && this.interrupted) {
      this.interrupted = false;
      for (const listener of this.listeners) listener(null);
    }
    void this.consume(stream);
  }

  private async consume(stream: EventStream): Promise<void> {
    try {
      for await (const { event } of stream) {
        if (event.type === 'tokens-revoked' && typeof event.userId === 'string') {
          this.invalidate(event.userId);
        }
      }
    } catch (error) {
      if (!this.stopped) {
        this.logger.warn(
          `Revocation events interrupted: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
    // Events may have been lost: trust nothing cached until the channel is live again.
    this.live = false;
    this.interrupted = true;
    this.invalidations += 1;
    this.cache.clear();
    if (this.stopped) return;
    setTimeout(() => {
      void this.follow();
    }, RESUBSCRIBE_AFTER_MS).unref();
  }
}
