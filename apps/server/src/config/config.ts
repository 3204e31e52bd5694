import { resolve } from 'node:path';
import { isSupportedCiphersuite, SUPPORTED_CIPHERSUITES } from '@parley/mls';

/** Where Parley keeps its data: embedded PGlite in a directory, or a PostgreSQL server. */
export type DatabaseConfig =
  { kind: 'pglite'; dataDir: string | null } | { kind: 'postgres'; url: string };

/** Verification of JWTs issued by an integrating app's own identity provider. */
export interface ExternalJwtConfig {
  issuer: string;
  audience: string;
  /** Exactly one of the two is set. */
  hs256Secret: string | null;
  jwksUrl: string | null;
}

/** Limits on everything a client controls; each is answered with LIMIT_EXCEEDED. */
export interface LimitsConfig {
  bodyBytes: number;
  keyPackagesPerUpload: number;
  keyPackageBytes: number;
  keyPackagesPerDevice: number;
  devicesPerUser: number;
  messageBytes: number;
  commitBundleBytes: number;
  membersPerConversation: number;
  pageSize: number;
  usersPerClaim: number;
  claimsPerMinute: number;
  claimsPerTargetPerMinute: number;
}

/** Parley's whole configuration, validated once at boot. */
export interface Config {
  port: number;
  host: string;
  /** Domain part of every MLS identity `<user>:<device>@<domain>`. */
  domain: string;
  development: boolean;
  database: DatabaseConfig;
  runMigrations: boolean;
  /** Redis for pub/sub between instances; null: in-process pub/sub (one instance). */
  redisUrl: string | null;
  /** Null: a secret generated once and kept in the database (see TokenSecretService). */
  tokenSecret: string | null;
  tokenTtlSeconds: number;
  externalJwt: ExternalJwtConfig | null;
  supportedCiphersuites: number[];
  keyPackageMaxLifetimeSeconds: number;
  clockSkewSeconds: number;
  keyPackageLowWater: number;
  /** Application messages may be up to this many epochs behind the conversation's epoch. */
  messageEpochWindow: number;
  /** Log entries older than this are deleted; devices further behind get a gap marker. 0: keep. */
  logRetentionSeconds: number;
  limits: LimitsConfig;
}

/** A configuration value that cannot be used; the message names the variable. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`Invalid configuration: ${variable} ${problem}`);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

function text(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) {
    throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = text(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = text(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, 'must be a URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}`);
  }
  return raw;
}

function database(env: Env): DatabaseConfig {
  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  if (databaseUrl !== undefined) return { kind: 'postgres', url: databaseUrl };
  const dir = text(env, 'PARLEY_DATA_DIR') ?? './data';
  // ":memory:" keeps the embedded database in memory (tests, demos).
  return { kind: 'pglite', dataDir: dir === ':memory:' ? null : resolve(dir) };
}

function externalJwt(env: Env): ExternalJwtConfig | null {
  const issuer = text(env, 'PARLEY_JWT_ISSUER');
  const audience = text(env, 'PARLEY_JWT_AUDIENCE');
  const hs256Secret = text(env, 'PARLEY_JWT_SECRET') ?? null;
  const jwksUrl = url(env, 'PARLEY_JWT_JWKS_URL', ['https:', 'http:']) ?? null;
  if (issuer === undefined && audience === undefined && hs256Secret === null && jwksUrl === null) {
    return null;
  }
  if (issuer === undefined) throw new ConfigError('PARLEY_JWT_ISSUER', 'is required for app JWTs');
  if (audience === undefined) {
    throw new ConfigError('PARLEY_JWT_AUDIENCE', 'is required for app JWTs');
  }
  if ((hs256Secret === null) === (jwksUrl === null)) {
    throw new ConfigError('PARLEY_JWT_SECRET', 'or PARLEY_JWT_JWKS_URL: set exactly one');
  }
  if (hs256Secret !== null && hs256Secret.length < 32) {
    throw new ConfigError('PARLEY_JWT_SECRET', 'must be at least 32 characters');
  }
  return { issuer, audience, hs256Secret, jwksUrl };
}

function ciphersuites(env: Env): number[] {
  const raw = text(env, 'PARLEY_CIPHERSUITES') ?? '1,2,3';
  const suites = raw.split(',').map((part) => part.trim());
  if (!suites.every((suite) => /^\d+$/.test(suite) && isSupportedCiphersuite(Number(suite)))) {
    throw new ConfigError(
      'PARLEY_CIPHERSUITES',
      `must be a comma-separated list of MLS ciphersuite ids among ${SUPPORTED_CIPHERSUITES.join(', ')}, got "${raw}"`,
    );
  }
  return [...new Set(suites.map(Number))];
}

const MINUTE = 60;
const DAY = 24 * 60 * MINUTE;

/** Reads and validates the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const tokenSecret = text(env, 'PARLEY_TOKEN_SECRET') ?? null;
  if (tokenSecret !== null && tokenSecret.length < 32) {
    throw new ConfigError('PARLEY_TOKEN_SECRET', 'must be at least 32 characters');
  }
  const domain = text(env, 'PARLEY_DOMAIN') ?? 'localhost';
  // Label by label (RFC 1123): 1–63 letters, digits or inner dashes; at most 253 in all.
  const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
  if (domain.length > 253 || !domain.split('.').every((part) => label.test(part))) {
    throw new ConfigError('PARLEY_DOMAIN', `must be a DNS name, got "${domain}"`);
  }
  return {
    port: integer(env, 'PORT', 4000, 0, 65535),
    host: text(env, 'HOST') ?? '127.0.0.1',
    domain: domain.toLowerCase(),
    development: text(env, 'NODE_ENV') === 'development',
    database: database(env),
    runMigrations: flag(env, 'PARLEY_MIGRATIONS_RUN', true),
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:']) ?? null,
    tokenSecret,
    tokenTtlSeconds: integer(env, 'PARLEY_TOKEN_TTL_SECONDS', 30 * DAY, MINUTE, 365 * DAY),
    externalJwt: externalJwt(env),
    supportedCiphersuites: ciphersuites(env),
    keyPackageMaxLifetimeSeconds: integer(
      env,
      'PARLEY_KEY_PACKAGE_MAX_LIFETIME_SECONDS',
      90 * DAY,
      MINUTE,
      5 * 365 * DAY,
    ),
    clockSkewSeconds: integer(env, 'PARLEY_CLOCK_SKEW_SECONDS', 5 * MINUTE, 0, DAY),
    keyPackageLowWater: integer(env, 'PARLEY_KEY_PACKAGE_LOW_WATER', 10, 0, 10_000),
    messageEpochWindow: integer(env, 'PARLEY_MESSAGE_EPOCH_WINDOW', 2, 0, 100),
    logRetentionSeconds: integer(env, 'PARLEY_LOG_RETENTION_SECONDS', 90 * DAY, 0, 10 * 365 * DAY),
    limits: {
      bodyBytes: integer(env, 'PARLEY_LIMIT_BODY_BYTES', 4 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
      keyPackagesPerUpload: integer(env, 'PARLEY_LIMIT_KEY_PACKAGES_PER_UPLOAD', 100, 1, 10_000),
      keyPackageBytes: integer(env, 'PARLEY_LIMIT_KEY_PACKAGE_BYTES', 16 * 1024, 256, 1024 * 1024),
      keyPackagesPerDevice: integer(
        env,
        'PARLEY_LIMIT_KEY_PACKAGES_PER_DEVICE',
        1000,
        1,
        1_000_000,
      ),
      devicesPerUser: integer(env, 'PARLEY_LIMIT_DEVICES_PER_USER', 16, 1, 10_000),
      messageBytes: integer(env, 'PARLEY_LIMIT_MESSAGE_BYTES', 256 * 1024, 256, 64 * 1024 * 1024),
      commitBundleBytes: integer(
        env,
        'PARLEY_LIMIT_COMMIT_BUNDLE_BYTES',
        4 * 1024 * 1024,
        1024,
        1024 * 1024 * 1024,
      ),
      membersPerConversation: integer(
        env,
        'PARLEY_LIMIT_MEMBERS_PER_CONVERSATION',
        5000,
        2,
        100_000,
      ),
      pageSize: integer(env, 'PARLEY_LIMIT_PAGE_SIZE', 500, 1, 10_000),
      usersPerClaim: integer(env, 'PARLEY_LIMIT_USERS_PER_CLAIM', 100, 1, 10_000),
      claimsPerMinute: integer(env, 'PARLEY_LIMIT_CLAIMS_PER_MINUTE', 600, 1, 1_000_000),
      claimsPerTargetPerMinute: integer(
        env,
        'PARLEY_LIMIT_CLAIMS_PER_TARGET_PER_MINUTE',
        60,
        1,
        1_000_000,
      ),
    },
  };
}
