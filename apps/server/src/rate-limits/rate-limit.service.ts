import { createHash } from 'node:crypto';
import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Redis } from 'ioredis';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterPostgres,
  RateLimiterRedis,
  RateLimiterRes,
} from 'rate-limiter-flexible';
import { DataSource } from 'typeorm';
import { DomainError } from '../common/domain.errors.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';

/** Every rate limit Parley applies; each is counted per the key its caller passes. */
export type RateLimitName =
  | 'signInsPerAddress'
  | 'signUpsPerAddress'
  | 'messagesPerDevice'
  | 'commitBundlesPerDevice'
  | 'keyPackageUploadsPerDevice'
  | 'claimsPerUser'
  | 'claimsPerTarget'
  | 'connectionsPerAddress'
  | 'connectionsPerUser'
  | 'subscriptionsPerUser'
  | 'subscriptionsPerAddress';

/** One limiter call: which limit, and whose key. */
export interface RateLimitHit {
  name: RateLimitName;
  key: string;
}

/** Where the shared limiters keep their counters (reported by /health-like callers and tests). */
export type RateLimitStore = 'redis' | 'postgres' | 'memory';

const MINUTE = 60;
const HOUR = 60 * MINUTE;
/** Failed sign-ins are remembered this long after the first of a run (or until a success). */
const FAILURE_MEMORY_SECONDS = 24 * HOUR;
/** A frozen Redis must not hold requests: past this, the limiter falls back to memory. */
const REDIS_COMMAND_TIMEOUT_MS = 250;
/** The table made by migration 1795364000000 (rate-limiter-flexible's own layout). */
const POSTGRES_TABLE = 'rate_limits';
/** Keys longer than this are hashed, so that any key fits the table's varchar(255). */
const MAX_PLAIN_KEY = 128;

/** The RATE_LIMITED refusal clients see, with when to try again. */
export function rateLimited(retryAfterMs: number): DomainError {
  return new DomainError('RATE_LIMITED', 'Too many requests; try again later', {
    retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)),
  });
}

function boundedKey(key: string): string {
  return key.length <= MAX_PLAIN_KEY ? key : createHash('sha256').update(key).digest('hex');
}

/**
 * The one place Parley counts requests against rate limits, on rate-limiter-flexible.
 *
 * Shared limits live where every instance sees them: Redis when REDIS_URL is set (its own
 * connection; a Redis that is down or frozen falls back, per instance, to memory within 250 ms
 * rather than stall requests), else PostgreSQL's `rate_limits` table when on PostgreSQL (made by
 * a migration), else memory on PGlite, where one process owns the data dir (a lock file makes
 * sure), so memory is exact. Messages per device are always counted in this instance's memory
 * (measured: 6 µs a count, against 0.18 ms on Redis and 0.27 ms on PostgreSQL's unlogged table):
 * the send path, the hottest one, gains no round trip and does not depend on Redis being healthy,
 * and a device's rate is still bounded (by the number of instances times the limit at worst).
 */
@Injectable()
export class RateLimitService implements OnApplicationShutdown {
  private readonly logger = new Logger(RateLimitService.name);
  private readonly redis: Redis | null;
  /** Where the shared limits are counted. */
  readonly store: RateLimitStore;
  private readonly limiters: Record<RateLimitName, RateLimiterAbstract>;
  private readonly signInFailures: RateLimiterAbstract;
  private readonly signInLockouts: RateLimiterAbstract;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @InjectDataSource() dataSource: DataSource,
  ) {
    const { rateLimits: rates, limits } = config;
    this.redis =
      config.redisUrl === null
        ? null
        : new Redis(config.redisUrl, {
            connectionName: `${rates.keyPrefix}:rate-limits`,
            // Refuse at once while disconnected (the insurance limiter answers), and give up on
            // a command after a short wait rather than queue requests behind a frozen Redis.
            enableOfflineQueue: false,
            commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
            maxRetriesPerRequest: 0,
            retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
          });
    // Once per outage, not once per reconnect attempt.
    let reported = false;
    this.redis?.on('error', (error: Error) => {
      if (reported) return;
      reported = true;
      this.logger.warn(`Rate limits counted in memory until Redis is back: ${error.message}`);
    });
    this.redis?.on('ready', () => {
      reported = false;
    });
    this.store =
      this.redis !== null ? 'redis' : config.database.kind === 'postgres' ? 'postgres' : 'memory';

    let cleaner = true;
    const shared = (name: string, points: number, duration: number): RateLimiterAbstract => {
      const keyPrefix = `${rates.keyPrefix}:${name}`;
      // Counted in memory when the store is unreachable, so that an outage of Redis (or a
      // PostgreSQL that is down anyway) does not turn into refusals or hung requests.
      const insuranceLimiter = new RateLimiterMemory({ keyPrefix, points, duration });
      if (this.redis !== null) {
        return new RateLimiterRedis({
          storeClient: this.redis,
          keyPrefix,
          points,
          duration,
          insuranceLimiter,
          rejectIfRedisNotReady: true,
        });
      }
      if (config.database.kind === 'postgres') {
        // One limiter deletes expired rows every five minutes; the others need not repeat it.
        const clearExpiredByTimeout = cleaner;
        cleaner = false;
        return new RateLimiterPostgres({
          storeClient: dataSource,
          storeType: 'typeorm',
          tableName: POSTGRES_TABLE,
          tableCreated: true,
          clearExpiredByTimeout,
          keyPrefix,
          points,
          duration,
          insuranceLimiter,
        });
      }
      return new RateLimiterMemory({ keyPrefix, points, duration });
    };
    const local = (name: string, points: number, duration: number) =>
      new RateLimiterMemory({ keyPrefix: `${rates.keyPrefix}:${name}`, points, duration });

    this.limiters = {
      signInsPerAddress: shared('sign-in-address', rates.signInsPerAddressPerMinute, MINUTE),
      signUpsPerAddress: shared('sign-up-address', rates.signUpsPerAddressPerHour, HOUR),
      messagesPerDevice: local('message-device', rates.messagesPerDevicePerMinute, MINUTE),
      commitBundlesPerDevice: shared(
        'commit-device',
        rates.commitBundlesPerDevicePerMinute,
        MINUTE,
      ),
      keyPackageUploadsPerDevice: shared(
        'key-package-upload-device',
        rates.keyPackageUploadsPerDevicePerMinute,
        MINUTE,
      ),
      claimsPerUser: shared('claim-user', limits.claimsPerMinute, MINUTE),
      claimsPerTarget: shared('claim-target', limits.claimsPerTargetPerMinute, MINUTE),
      connectionsPerAddress: shared(
        'connect-address',
        rates.connectionsPerAddressPerMinute,
        MINUTE,
      ),
      connectionsPerUser: shared('connect-user', rates.connectionsPerUserPerMinute, MINUTE),
      subscriptionsPerUser: shared('subscribe-user', rates.subscriptionsPerUserPerMinute, MINUTE),
      subscriptionsPerAddress: shared(
        'subscribe-address',
        rates.subscriptionsPerAddressPerMinute,
        MINUTE,
      ),
    };
    this.signInFailures = shared(
      'sign-in-failures',
      Number.MAX_SAFE_INTEGER,
      FAILURE_MEMORY_SECONDS,
    );
    this.signInLockouts = shared('sign-in-lockout', 1, rates.signInMaxBackoffSeconds);
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.redis === null) return;
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  /** Counts one request against a limit; throws RATE_LIMITED when it is used up. */
  async consume(name: RateLimitName, key: string): Promise<void> {
    await this.consumeAll([{ name, key }]);
  }

  /**
   * Counts one request against several limits, all or nothing: when one refuses, the points
   * already taken from the others are given back, so a refused request counts against none.
   */
  async consumeAll(hits: readonly RateLimitHit[]): Promise<void> {
    const taken: RateLimitHit[] = [];
    for (const hit of hits) {
      try {
        await this.limiters[hit.name].consume(boundedKey(hit.key));
        taken.push(hit);
      } catch (error) {
        if (!(error instanceof RateLimiterRes)) throw error;
        await Promise.all(
          [hit, ...taken].map((done) => this.limiters[done.name].reward(boundedKey(done.key))),
        );
        throw rateLimited(error.msBeforeNext);
      }
    }
  }

  /** Throws RATE_LIMITED while `username` is locked out after failed sign-ins. */
  async assertSignInAllowed(username: string): Promise<void> {
    const lockout = await this.signInLockouts.get(boundedKey(username));
    if (lockout !== null && lockout.consumedPoints > this.signInLockouts.points) {
      throw rateLimited(lockout.msBeforeNext);
    }
  }

  /**
   * Records a failed sign-in for `username`. Past the free failures, each one locks the username
   * out for twice as long as the one before (from the configured first lock-out, up to the
   * maximum), whoever tries, so guessing slows exponentially however many addresses are used.
   */
  async signInFailed(username: string): Promise<void> {
    const key = boundedKey(username);
    const { signInFreeFailures, signInBackoffSeconds, signInMaxBackoffSeconds } =
      this.config.rateLimits;
    const failures = await this.signInFailures.penalty(key);
    const beyond = failures.consumedPoints - signInFreeFailures;
    if (beyond < 0) return;
    const seconds = Math.min(
      signInBackoffSeconds * 2 ** Math.min(beyond, 30),
      signInMaxBackoffSeconds,
    );
    await this.signInLockouts.block(key, seconds);
  }

  /** A correct password ends the username's run of failures. */
  async signInSucceeded(username: string): Promise<void> {
    await this.signInFailures.delete(boundedKey(username));
  }
}
