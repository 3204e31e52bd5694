import { isAbsolute, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

const SECRET_32 = 'x'.repeat(32);
const APP_JWT = {
  PARLEY_JWT_ISSUER: 'https://idp.example',
  PARLEY_JWT_AUDIENCE: 'parley',
};

/** The ConfigError that loading this environment throws (fails the test if none is thrown). */
function configErrorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be rejected`);
}

describe('loadConfig', () => {
  it('has safe defaults for an empty environment', () => {
    const config = loadConfig({});
    expect(config).toEqual({
      port: 4000,
      host: '127.0.0.1',
      domain: 'localhost',
      development: false,
      database: { kind: 'pglite', dataDir: resolve('./data') },
      runMigrations: true,
      redisUrl: null,
      tokenSecret: null,
      tokenTtlSeconds: 30 * 24 * 60 * 60,
      externalJwt: null,
      supportedCiphersuites: [1, 2, 3],
      keyPackageMaxLifetimeSeconds: 90 * 24 * 60 * 60,
      clockSkewSeconds: 5 * 60,
      keyPackageLowWater: 10,
      messageEpochWindow: 2,
      logRetentionSeconds: 90 * 24 * 60 * 60,
      liveMaxLagMs: 10_000,
      claimedKeyPackageRetentionDays: 30,
      calls: { maxParticipants: 8, heartbeatTimeoutSeconds: 30, iceServers: [] },
      rateLimits: {
        signInsPerAddressPerMinute: 30,
        signInFreeFailures: 5,
        signInBackoffSeconds: 1,
        signInMaxBackoffSeconds: 900,
        signUpsPerAddressPerHour: 20,
        messagesPerDevicePerMinute: 1200,
        commitBundlesPerDevicePerMinute: 120,
        keyPackageUploadsPerDevicePerMinute: 30,
        connectionsPerAddressPerMinute: 120,
        connectionsPerUserPerMinute: 60,
        subscriptionsPerUserPerMinute: 60,
        subscriptionsPerAddressPerMinute: 120,
        keyPrefix: 'parley',
      },
      trustProxyHops: 0,
      limits: {
        bodyBytes: 4 * 1024 * 1024,
        keyPackagesPerUpload: 100,
        keyPackageBytes: 16 * 1024,
        keyPackagesPerDevice: 1000,
        devicesPerUser: 16,
        messageBytes: 256 * 1024,
        commitBundleBytes: 4 * 1024 * 1024,
        membersPerConversation: 5000,
        pageSize: 500,
        usersPerClaim: 100,
        claimsPerMinute: 600,
        claimsPerTargetPerMinute: 60,
        subscriptionsPerSocket: 2,
        subscriptionsPerDevice: 4,
      },
      queryLimits: {
        maxTokens: 2000,
        maxDepth: 10,
        maxAliases: 30,
        maxRootFields: 20,
        maxDirectives: 30,
        maxCost: 5000,
      },
      http: {
        headersTimeoutMs: 10_000,
        requestTimeoutMs: 30_000,
        idleTimeoutMs: 60_000,
        connectionsCheckIntervalMs: 1000,
        maxConnections: 10_000,
      },
      metrics: { kind: 'app' },
      logLevel: 'info',
    });
    const { database } = config;
    expect(
      database.kind === 'pglite' && database.dataDir !== null && isAbsolute(database.dataDir),
    ).toBe(true);
  });

  it('reads rate limits, their Redis key prefix and PARLEY_TRUST_PROXY', () => {
    const config = loadConfig({
      PARLEY_RATE_SIGN_INS_PER_ADDRESS_PER_MINUTE: '7',
      PARLEY_RATE_SIGN_IN_FREE_FAILURES: '3',
      PARLEY_RATE_SIGN_IN_BACKOFF_SECONDS: '2',
      PARLEY_RATE_SIGN_IN_MAX_BACKOFF_SECONDS: '60',
      PARLEY_RATE_MESSAGES_PER_DEVICE_PER_MINUTE: '99',
      PARLEY_RATE_KEY_PREFIX: 'parley-staging',
      PARLEY_TRUST_PROXY: '2',
    });
    expect(config.rateLimits).toMatchObject({
      signInsPerAddressPerMinute: 7,
      signInFreeFailures: 3,
      signInBackoffSeconds: 2,
      signInMaxBackoffSeconds: 60,
      messagesPerDevicePerMinute: 99,
      keyPrefix: 'parley-staging',
    });
    expect(config.trustProxyHops).toBe(2);
  });

  it('treats blank values as unset', () => {
    expect(loadConfig({ PORT: '  ', PARLEY_TOKEN_SECRET: '', PARLEY_DOMAIN: ' ' })).toMatchObject({
      port: 4000,
      tokenSecret: null,
      domain: 'localhost',
    });
  });

  it('resolves PARLEY_DATA_DIR to an absolute path, and keeps ":memory:" in memory', () => {
    expect(loadConfig({ PARLEY_DATA_DIR: 'var/parley' }).database).toEqual({
      kind: 'pglite',
      dataDir: resolve('var/parley'),
    });
    expect(loadConfig({ PARLEY_DATA_DIR: ':memory:' }).database).toEqual({
      kind: 'pglite',
      dataDir: null,
    });
  });

  it.each(['postgres://parley@db:5432/parley', 'postgresql://parley:pw@localhost/parley'])(
    'uses PostgreSQL when DATABASE_URL is %s, whatever PARLEY_DATA_DIR says',
    (url) => {
      expect(loadConfig({ DATABASE_URL: url, PARLEY_DATA_DIR: './data' }).database).toEqual({
        kind: 'postgres',
        url,
      });
    },
  );

  it('reads every setting it is given', () => {
    const config = loadConfig({
      PORT: '8080',
      HOST: '0.0.0.0',
      PARLEY_DOMAIN: 'Chat.Example.COM',
      NODE_ENV: 'development',
      PARLEY_MIGRATIONS_RUN: 'off',
      PARLEY_TOKEN_SECRET: SECRET_32,
      PARLEY_TOKEN_TTL_SECONDS: '3600',
      PARLEY_CIPHERSUITES: ' 3, 1 ,3',
      PARLEY_LIMIT_DEVICES_PER_USER: '4',
      PARLEY_CLAIMED_KEY_PACKAGE_RETENTION_DAYS: '0',
    });
    expect(config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      domain: 'chat.example.com',
      development: true,
      runMigrations: false,
      tokenSecret: SECRET_32,
      tokenTtlSeconds: 3600,
      supportedCiphersuites: [3, 1],
      limits: { devicesPerUser: 4 },
      claimedKeyPackageRetentionDays: 0,
    });
  });

  it('reads the call settings, ICE servers as JSON (a single URL string too)', () => {
    const config = loadConfig({
      PARLEY_CALL_MAX_PARTICIPANTS: '4',
      PARLEY_CALL_HEARTBEAT_TIMEOUT_SECONDS: '10',
      PARLEY_ICE_SERVERS:
        '[{"urls":"stun:stun.example.com:3478"},{"urls":["turn:turn.example.com"],"username":"u","credential":"c"}]',
    });
    expect(config.calls).toEqual({
      maxParticipants: 4,
      heartbeatTimeoutSeconds: 10,
      iceServers: [
        { urls: ['stun:stun.example.com:3478'] },
        { urls: ['turn:turn.example.com'], username: 'u', credential: 'c' },
      ],
    });
  });

  it.each([
    'not json',
    '{"urls":["stun:x"]}',
    '[{"urls":[]}]',
    '[{"urls":["https://example.com"]}]',
    '[{"urls":["stun:x"],"username":1}]',
    '[42]',
  ])('refuses PARLEY_ICE_SERVERS=%s, naming the variable', (raw) => {
    expect(() => loadConfig({ PARLEY_ICE_SERVERS: raw })).toThrow(/PARLEY_ICE_SERVERS/);
  });

  it.each([
    'localhost',
    'parley.test',
    'chat-1.example.com',
    `${'a'.repeat(63)}.example`,
    'xn--bcher-kva.example',
  ])('accepts the DNS name %s as PARLEY_DOMAIN', (domain) => {
    expect(loadConfig({ PARLEY_DOMAIN: domain }).domain).toBe(domain);
  });

  it.each([
    ['1', true],
    ['TRUE', true],
    ['yes', true],
    ['on', true],
    ['0', false],
    ['False', false],
    ['no', false],
    ['off', false],
  ])('reads PARLEY_MIGRATIONS_RUN=%s as %s', (raw, expected) => {
    expect(loadConfig({ PARLEY_MIGRATIONS_RUN: raw }).runMigrations).toBe(expected);
  });

  it.each([
    ['on', { kind: 'app' }],
    ['TRUE', { kind: 'app' }],
    ['off', { kind: 'off' }],
    ['0', { kind: 'off' }],
    ['9464', { kind: 'listen', host: '127.0.0.1', port: 9464 }],
    ['0.0.0.0:9464', { kind: 'listen', host: '0.0.0.0', port: 9464 }],
    ['metrics.internal:9100', { kind: 'listen', host: 'metrics.internal', port: 9100 }],
    ['[::1]:9464', { kind: 'listen', host: '::1', port: 9464 }],
  ])('reads PARLEY_METRICS=%s as %j', (raw, expected) => {
    expect(loadConfig({ PARLEY_METRICS: raw }).metrics).toEqual(expected);
  });

  it('reads PARLEY_LOG_LEVEL', () => {
    expect(loadConfig({ PARLEY_LOG_LEVEL: 'Debug' }).logLevel).toBe('debug');
    expect(loadConfig({ PARLEY_LOG_LEVEL: 'silent' }).logLevel).toBe('silent');
  });

  it('reads app-JWT settings with an HS256 secret or a JWKS URL', () => {
    expect(loadConfig({ ...APP_JWT, PARLEY_JWT_SECRET: SECRET_32 }).externalJwt).toEqual({
      issuer: 'https://idp.example',
      audience: 'parley',
      hs256Secret: SECRET_32,
      jwksUrl: null,
    });
    const jwksUrl = 'https://idp.example/.well-known/jwks.json';
    expect(loadConfig({ ...APP_JWT, PARLEY_JWT_JWKS_URL: jwksUrl }).externalJwt).toEqual({
      issuer: 'https://idp.example',
      audience: 'parley',
      hs256Secret: null,
      jwksUrl,
    });
  });

  it.each([
    ['PORT', { PORT: 'http' }],
    ['PORT', { PORT: '80.5' }],
    ['PORT', { PORT: '-1' }],
    ['PORT', { PORT: '65536' }],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://db/parley' }],
    ['DATABASE_URL', { DATABASE_URL: 'not a url' }],
    ['PARLEY_TOKEN_SECRET', { PARLEY_TOKEN_SECRET: 'x'.repeat(31) }],
    ['PARLEY_TOKEN_TTL_SECONDS', { PARLEY_TOKEN_TTL_SECONDS: '59' }],
    ['PARLEY_DOMAIN', { PARLEY_DOMAIN: 'parley.test:4000' }],
    ['PARLEY_DOMAIN', { PARLEY_DOMAIN: 'user@parley.test' }],
    ['PARLEY_DOMAIN', { PARLEY_DOMAIN: 'parley test' }],
    ['PARLEY_DOMAIN', { PARLEY_DOMAIN: '-parley.test' }],
    ['PARLEY_DOMAIN', { PARLEY_DOMAIN: 'parley..test' }],
    ['PARLEY_DOMAIN', { PARLEY_DOMAIN: 'parley.-test' }],
    ['PARLEY_DOMAIN', { PARLEY_DOMAIN: `${'a'.repeat(64)}.test` }],
    ['PARLEY_MIGRATIONS_RUN', { PARLEY_MIGRATIONS_RUN: 'maybe' }],
    [
      'PARLEY_RATE_SIGN_UPS_PER_ADDRESS_PER_HOUR',
      { PARLEY_RATE_SIGN_UPS_PER_ADDRESS_PER_HOUR: '0' },
    ],
    [
      'PARLEY_RATE_MESSAGES_PER_DEVICE_PER_MINUTE',
      { PARLEY_RATE_MESSAGES_PER_DEVICE_PER_MINUTE: 'x' },
    ],
    ['PARLEY_RATE_KEY_PREFIX', { PARLEY_RATE_KEY_PREFIX: 'has space' }],
    ['PARLEY_TRUST_PROXY', { PARLEY_TRUST_PROXY: 'true' }],
    ['PARLEY_METRICS', { PARLEY_METRICS: 'maybe' }],
    ['PARLEY_METRICS', { PARLEY_METRICS: '65536' }],
    ['PARLEY_METRICS', { PARLEY_METRICS: 'http://host:9464' }],
    ['PARLEY_LOG_LEVEL', { PARLEY_LOG_LEVEL: 'verbose' }],
    [
      'PARLEY_CIPHERSUITES',
      { PARLEY_CIPHERSUITES: 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519' },
    ],
    ['PARLEY_CIPHERSUITES', { PARLEY_CIPHERSUITES: '1,,2' }],
    ['PARLEY_CIPHERSUITES', { PARLEY_CIPHERSUITES: '65536' }],
    ['PARLEY_CIPHERSUITES', { PARLEY_CIPHERSUITES: '-1' }],
    ['PARLEY_CIPHERSUITES', { PARLEY_CIPHERSUITES: '0' }],
    ['PARLEY_CIPHERSUITES', { PARLEY_CIPHERSUITES: '1,4660' }],
    ['PARLEY_LIMIT_BODY_BYTES', { PARLEY_LIMIT_BODY_BYTES: '1023' }],
    [
      'PARLEY_CLAIMED_KEY_PACKAGE_RETENTION_DAYS',
      { PARLEY_CLAIMED_KEY_PACKAGE_RETENTION_DAYS: '1.5' },
    ],
    [
      'PARLEY_CLAIMED_KEY_PACKAGE_RETENTION_DAYS',
      { PARLEY_CLAIMED_KEY_PACKAGE_RETENTION_DAYS: '3651' },
    ],
    [
      'PARLEY_JWT_AUDIENCE',
      { PARLEY_JWT_ISSUER: 'https://idp.example', PARLEY_JWT_SECRET: SECRET_32 },
    ],
    ['PARLEY_JWT_ISSUER', { PARLEY_JWT_AUDIENCE: 'parley', PARLEY_JWT_SECRET: SECRET_32 }],
    ['PARLEY_JWT_ISSUER', { PARLEY_JWT_SECRET: SECRET_32 }],
    [
      'PARLEY_JWT_JWKS_URL',
      {
        ...APP_JWT,
        PARLEY_JWT_SECRET: SECRET_32,
        PARLEY_JWT_JWKS_URL: 'https://idp.example/jwks.json',
      },
    ],
    ['PARLEY_JWT_JWKS_URL', APP_JWT],
    ['PARLEY_JWT_SECRET', { ...APP_JWT, PARLEY_JWT_SECRET: 'x'.repeat(31) }],
    ['PARLEY_JWT_JWKS_URL', { ...APP_JWT, PARLEY_JWT_JWKS_URL: 'ftp://idp.example/jwks.json' }],
  ])('rejects a bad %s: %j', (variable, env) => {
    const error = configErrorOf(env);
    expect(error.message).toContain(variable);
    expect(error.message).toMatch(/^Invalid configuration: /);
  });

  it('says which variable is bad in ConfigError.variable and never echoes secrets', () => {
    const short = 'short-secret-value';
    const error = configErrorOf({ PARLEY_TOKEN_SECRET: short });
    expect(error.variable).toBe('PARLEY_TOKEN_SECRET');
    expect(error.message).not.toContain(short);
    expect(configErrorOf({ ...APP_JWT, PARLEY_JWT_SECRET: short }).message).not.toContain(short);
  });
});
