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
  /** Live subscriptions on one graphql-ws socket. */
  subscriptionsPerSocket: number;
  /** Live subscriptions of one device on this instance (a reconnect may briefly overlap). */
  subscriptionsPerDevice: number;
}

/** A STUN or TURN server handed to clients for WebRTC. */
export interface IceServerConfig {
  urls: string[];
  username?: string;
  credential?: string;
}

/** Calls: how many take part, when a silent participant is dropped, and which ICE servers. */
export interface CallsConfig {
  /** Devices in one call (a mesh: each sends its media to every other). */
  maxParticipants: number;
  /** A participant with no heartbeat for this long is dropped from its call. */
  heartbeatTimeoutSeconds: number;
  iceServers: IceServerConfig[];
}

/** Bounds on the shape of one GraphQL operation, checked before any resolver runs. */
export interface QueryLimitsConfig {
  maxTokens: number;
  maxDepth: number;
  maxAliases: number;
  maxRootFields: number;
  maxDirectives: number;
  maxCost: number;
}

/** HTTP connection hygiene: how long a client may take, and how many sockets it may hold. */
export interface HttpConfig {
  /** Until the request's headers are complete. */
  headersTimeoutMs: number;
  /** Until the whole request (headers and body) is in. */
  requestTimeoutMs: number;
  /** A socket with no traffic at all is closed after this. */
  idleTimeoutMs: number;
  /** How often Node checks the two request timeouts. */
  connectionsCheckIntervalMs: number;
  /** Open sockets (HTTP and WebSocket) at once; more are refused. */
  maxConnections: number;
}

/**
 * Where Prometheus metrics are served: on the app's own port at /metrics, on a separate listener
 * (an address operators can keep internal), or nowhere.
 */
export type MetricsConfig =
  { kind: 'off' } | { kind: 'app' } | { kind: 'listen'; host: string; port: number };

/** Levels of the JSON log, most severe first; `silent` logs nothing. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Rate limits (answered with RATE_LIMITED and retryAfterSeconds); see RateLimitService for where
 * each is counted. Claims are in {@link LimitsConfig} (claimsPerMinute, claimsPerTargetPerMinute).
 */
export interface RateLimitsConfig {
  /** Sign-in attempts per client address per minute, failed or not. */
  signInsPerAddressPerMinute: number;
  /** Failed sign-ins in a row for one username before each further one locks it out. */
  signInFreeFailures: number;
  /** First lock-out after the free failures; it doubles with every further failure. */
  signInBackoffSeconds: number;
  /** Longest lock-out. Failures count for a day from the first of a run, or until a success. */
  signInMaxBackoffSeconds: number;
  signUpsPerAddressPerHour: number;
  messagesPerDevicePerMinute: number;
  commitBundlesPerDevicePerMinute: number;
  keyPackageUploadsPerDevicePerMinute: number;
  connectionsPerAddressPerMinute: number;
  connectionsPerUserPerMinute: number;
  subscriptionsPerUserPerMinute: number;
  subscriptionsPerAddressPerMinute: number;
  /** Namespace of the limiters' keys in Redis, so that several deployments may share one. */
  keyPrefix: string;
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
  /**
   * A live subscriber whose oldest event not yet sent is older than this is cut off with
   * SLOW_CONSUMER (it resumes from the log): a lag in time, whatever the stream's rate.
   */
  liveMaxLagMs: number;
  /**
   * Claimed key packages are deleted this many days after their claim (and at once when the
   * Welcome that used them is acknowledged). 0: kept until their Welcome is acknowledged.
   */
  claimedKeyPackageRetentionDays: number;
  limits: LimitsConfig;
  calls: CallsConfig;
  rateLimits: RateLimitsConfig;
  /**
   * How many reverse proxies in front of Parley to trust for the client address
   * (X-Forwarded-For); 0: the address of the TCP peer.
   */
  trustProxyHops: number;
  queryLimits: QueryLimitsConfig;
  http: HttpConfig;
  metrics: MetricsConfig;
  logLevel: LogLevel;
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

function metrics(env: Env): MetricsConfig {
  const raw = text(env, 'PARLEY_METRICS')?.toLowerCase();
  if (raw === undefined || ['1', 'true', 'yes', 'on'].includes(raw)) return { kind: 'app' };
  if (['0', 'false', 'no', 'off'].includes(raw)) return { kind: 'off' };
  // "9464" or "host:9464" (IPv6 in brackets: "[::1]:9464").
  const match = /^(?:(\[[0-9a-f:.]+\]|[a-z0-9.-]+):)?(\d{1,5})$/.exec(raw);
  const port = Number(match?.[2]);
  if (match === null || port > 65535) {
    throw new ConfigError('PARLEY_METRICS', `must be on, off, a port or host:port, got "${raw}"`);
  }
  const host = match[1]?.replace(/^\[|\]$/g, '') ?? '127.0.0.1';
  return { kind: 'listen', host, port };
}

function iceServers(env: Env): IceServerConfig[] {
  const raw = text(env, 'PARLEY_ICE_SERVERS');
  if (raw === undefined) return [];
  const refuse = (problem: string) =>
    new ConfigError(
      'PARLEY_ICE_SERVERS',
      `must be a JSON array of { "urls": [...], "username"?, "credential"? } (${problem})`,
    );
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw refuse('not JSON');
  }
  if (!Array.isArray(value)) throw refuse('not an array');
  return value.map((entry: unknown) => {
    if (typeof entry !== 'object' || entry === null) throw refuse('an entry is not an object');
    const { urls, username, credential } = entry as Record<string, unknown>;
    const list = typeof urls === 'string' ? [urls] : urls;
    if (
      !Array.isArray(list) ||
      list.length === 0 ||
      !list.every((u) => typeof u === 'string' && /^(stuns?|turns?):/.test(u))
    ) {
      throw refuse('urls must be stun:, stuns:, turn: or turns: URLs');
    }
    if (username !== undefined && typeof username !== 'string') throw refuse('username');
    if (credential !== undefined && typeof credential !== 'string') throw refuse('credential');
    return {
      urls: list as string[],
      ...(username === undefined ? {} : { username }),
      ...(credential === undefined ? {} : { credential }),
    };
  });
}

function logLevel(env: Env): LogLevel {
  const raw = text(env, 'PARLEY_LOG_LEVEL')?.toLowerCase() ?? 'info';
  const level = LOG_LEVELS.find((candidate) => candidate === raw);
  if (level === undefined) {
    throw new ConfigError(
      'PARLEY_LOG_LEVEL',
      `must be one of ${LOG_LEVELS.join(', ')}, got "${raw}"`,
    );
  }
  return level;
}

const MINUTE = 60;
const DAY = 24 * 60 * MINUTE;

function rateLimits(env: Env): RateLimitsConfig {
  const rate = (name: string, fallback: number) =>
    integer(env, `PARLEY_RATE_${name}`, fallback, 1, 1_000_000);
  const keyPrefix = text(env, 'PARLEY_RATE_KEY_PREFIX') ?? 'parley';
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(keyPrefix)) {
    throw new ConfigError('PARLEY_RATE_KEY_PREFIX', 'must be 1–64 letters, digits, dots, dashes');
  }
  return {
    signInsPerAddressPerMinute: rate('SIGN_INS_PER_ADDRESS_PER_MINUTE', 30),
    signInFreeFailures: integer(env, 'PARLEY_RATE_SIGN_IN_FREE_FAILURES', 5, 1, 1000),
    signInBackoffSeconds: integer(env, 'PARLEY_RATE_SIGN_IN_BACKOFF_SECONDS', 1, 1, DAY),
    signInMaxBackoffSeconds: integer(env, 'PARLEY_RATE_SIGN_IN_MAX_BACKOFF_SECONDS', 900, 1, DAY),
    signUpsPerAddressPerHour: rate('SIGN_UPS_PER_ADDRESS_PER_HOUR', 20),
    messagesPerDevicePerMinute: rate('MESSAGES_PER_DEVICE_PER_MINUTE', 1200),
    commitBundlesPerDevicePerMinute: rate('COMMIT_BUNDLES_PER_DEVICE_PER_MINUTE', 120),
    keyPackageUploadsPerDevicePerMinute: rate('KEY_PACKAGE_UPLOADS_PER_DEVICE_PER_MINUTE', 30),
    connectionsPerAddressPerMinute: rate('CONNECTIONS_PER_ADDRESS_PER_MINUTE', 120),
    connectionsPerUserPerMinute: rate('CONNECTIONS_PER_USER_PER_MINUTE', 60),
    subscriptionsPerUserPerMinute: rate('SUBSCRIPTIONS_PER_USER_PER_MINUTE', 60),
    subscriptionsPerAddressPerMinute: rate('SUBSCRIPTIONS_PER_ADDRESS_PER_MINUTE', 120),
    keyPrefix,
  };
}

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
    liveMaxLagMs: integer(env, 'PARLEY_LIVE_MAX_LAG_MS', 10_000, 100, 10 * MINUTE * 1000),
    // 30 days: a claim is followed by its commit within seconds, or after an offline outbox retry;
    // a device offline longer than the 30-day token lifetime signs in again anyway. Past that the
    // row only records who claimed whose key package, which no one needs.
    claimedKeyPackageRetentionDays: integer(
      env,
      'PARLEY_CLAIMED_KEY_PACKAGE_RETENTION_DAYS',
      30,
      0,
      10 * 365,
    ),
    rateLimits: rateLimits(env),
    trustProxyHops: integer(env, 'PARLEY_TRUST_PROXY', 0, 0, 10),
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
      subscriptionsPerSocket: integer(env, 'PARLEY_LIMIT_SUBSCRIPTIONS_PER_SOCKET', 2, 1, 100),
      subscriptionsPerDevice: integer(env, 'PARLEY_LIMIT_SUBSCRIPTIONS_PER_DEVICE', 4, 1, 100),
    },
    calls: {
      // 8: a mesh sends each participant's media to every other (7 uplinks each at 8); beyond
      // that a selective forwarding unit is the answer, which SFrame keys already allow.
      maxParticipants: integer(env, 'PARLEY_CALL_MAX_PARTICIPANTS', 8, 2, 64),
      heartbeatTimeoutSeconds: integer(env, 'PARLEY_CALL_HEARTBEAT_TIMEOUT_SECONDS', 30, 3, 3600),
      iceServers: iceServers(env),
    },
    queryLimits: {
      maxTokens: integer(env, 'PARLEY_QUERY_MAX_TOKENS', 2000, 100, 1_000_000),
      maxDepth: integer(env, 'PARLEY_QUERY_MAX_DEPTH', 10, 2, 100),
      maxAliases: integer(env, 'PARLEY_QUERY_MAX_ALIASES', 30, 0, 10_000),
      maxRootFields: integer(env, 'PARLEY_QUERY_MAX_ROOT_FIELDS', 20, 1, 10_000),
      maxDirectives: integer(env, 'PARLEY_QUERY_MAX_DIRECTIVES', 30, 0, 10_000),
      maxCost: integer(env, 'PARLEY_QUERY_MAX_COST', 5000, 10, 10_000_000),
    },
    http: {
      headersTimeoutMs: integer(env, 'PARLEY_HTTP_HEADERS_TIMEOUT_MS', 10_000, 100, 600_000),
      requestTimeoutMs: integer(env, 'PARLEY_HTTP_REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000),
      idleTimeoutMs: integer(env, 'PARLEY_HTTP_IDLE_TIMEOUT_MS', 60_000, 100, 3_600_000),
      connectionsCheckIntervalMs: integer(
        env,
        'PARLEY_HTTP_CONNECTIONS_CHECK_INTERVAL_MS',
        1_000,
        50,
        60_000,
      ),
      maxConnections: integer(env, 'PARLEY_HTTP_MAX_CONNECTIONS', 10_000, 1, 1_000_000),
    },
    metrics: metrics(env),
    logLevel: logLevel(env),
  };
}
