import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  type JWTPayload,
  SignJWT,
  UnsecuredJWT,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataOf, errorCodeOf, registerDevice } from './support/graphql.js';
import {
  describeE2E,
  type GraphqlResponse,
  startTestApp,
  type TestApp,
  testDatabase,
} from './support/test-app.js';

const ME = `{ me { id username } }`;
const SIGN_UP = `mutation ($input: CredentialsInput!) { signUp(input: $input) { token user { id } } }`;
const ISSUER = 'https://idp.example';
const AUDIENCE = 'parley';
/** Parley's own issuer and audience for the test domain. */
const PARLEY = 'parley:parley.test';

interface Me {
  me: { id: string; username: string | null };
}

const encoder = new TextEncoder();
const now = () => Math.floor(Date.now() / 1000);

interface Claims {
  iss?: string;
  aud?: string;
  sub?: string;
  /** Seconds since the epoch; null leaves the claim out. */
  exp?: number | null;
}

/** A JWT with the given claims (defaults: the app IdP's issuer and audience, an hour to live). */
async function signToken(
  key: Uint8Array | CryptoKey,
  claims: Claims,
  header: { alg: string; kid?: string } = { alg: 'HS256' },
): Promise<string> {
  const jwt = new SignJWT({}).setProtectedHeader(header).setIssuedAt();
  const { iss = ISSUER, aud = AUDIENCE, sub, exp = now() + 3600 } = claims;
  jwt.setIssuer(iss).setAudience(aud);
  if (sub !== undefined) jwt.setSubject(sub);
  if (exp !== null) jwt.setExpirationTime(exp);
  return jwt.sign(key);
}

/** An unsigned token (`alg: none`) with otherwise valid claims. */
function unsignedToken(claims: JWTPayload): string {
  return new UnsecuredJWT(claims).setIssuedAt().setExpirationTime('1h').encode();
}

/** Posts `{ me }` with a raw Authorization header (or none). */
async function meWithHeader(app: TestApp, authorization: string): Promise<GraphqlResponse<Me>> {
  const response = await fetch(app.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization },
    body: JSON.stringify({ query: ME }),
  });
  return (await response.json()) as GraphqlResponse<Me>;
}

async function signUp(app: TestApp): Promise<{ token: string; userId: string }> {
  const username = `u_${randomBytes(6).toString('hex')}`;
  const { signUp: payload } = dataOf(
    await app.gql<{ signUp: { token: string; user: { id: string } } }>(SIGN_UP, {
      input: { username, password: 'correct horse battery' },
    }),
  );
  return { token: payload.token, userId: payload.user.id };
}

/** The error of a request that must fail with UNAUTHENTICATED. */
function unauthenticatedMessageOf(response: GraphqlResponse<unknown>): string {
  expect(errorCodeOf(response)).toBe('UNAUTHENTICATED');
  expect(response.data ?? null).toBeNull();
  return response.errors?.[0]?.message ?? '';
}

describeE2E('authentication', () => {
  const appSecret = encoder.encode(randomBytes(32).toString('hex'));
  /** Accepts app JWTs signed with appSecret; its own tokens use a configured secret. */
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({
      externalJwt: {
        issuer: ISSUER,
        audience: AUDIENCE,
        hs256Secret: new TextDecoder().decode(appSecret),
        jwksUrl: null,
      },
    });
  });
  afterAll(async () => {
    await app.close();
  });

  describe('app JWTs with an HS256 secret, and Parley’s own tokens', () => {
    it('maps each app subject to one Parley user, created on first use', async () => {
      const first = dataOf(await app.gql<Me>(ME, {}, await signToken(appSecret, { sub: 'alice' })));
      expect(first.me.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(first.me.username).toBeNull();

      const again = dataOf(await app.gql<Me>(ME, {}, await signToken(appSecret, { sub: 'alice' })));
      expect(again.me.id).toBe(first.me.id);

      const other = dataOf(await app.gql<Me>(ME, {}, await signToken(appSecret, { sub: 'bob' })));
      expect(other.me.id).not.toBe(first.me.id);
    });

    it('maps concurrent first uses of one subject to one user', async () => {
      const token = await signToken(appSecret, { sub: `carol-${randomUUID()}` });
      const responses = await Promise.all([1, 2, 3, 4].map(() => app.gql<Me>(ME, {}, token)));
      const ids = new Set(responses.map((response) => dataOf(response).me.id));
      expect(ids.size).toBe(1);
    });

    it('lets an app user register a device with the usual MLS identity', async () => {
      const token = await signToken(appSecret, { sub: 'dave' });
      const { me } = dataOf(await app.gql<Me>(ME, {}, token));
      const device = await registerDevice(app, token);
      expect(device.deviceId).toMatch(/^[0-9a-f]{16}$/);
      expect(device.identity).toBe(`${me.id}:${device.deviceId}@parley.test`);
    });

    it.each<[string, () => Promise<string>]>([
      ['a wrong audience', () => signToken(appSecret, { sub: 'alice', aud: 'someone-else' })],
      // Not the app's issuer, so it is checked as a Parley token, and fails.
      ['a wrong issuer', () => signToken(appSecret, { sub: 'alice', iss: 'https://evil.example' })],
      ['an expired token', () => signToken(appSecret, { sub: 'alice', exp: now() - 60 })],
      ['no expiry', () => signToken(appSecret, { sub: 'alice', exp: null })],
      [
        'a bad signature',
        () => signToken(encoder.encode(randomBytes(32).toString('hex')), { sub: 'alice' }),
      ],
      ['no subject', () => signToken(appSecret, {})],
      ['an empty subject', () => signToken(appSecret, { sub: '' })],
      [
        'alg none',
        () => Promise.resolve(unsignedToken({ iss: ISSUER, aud: AUDIENCE, sub: 'alice' })),
      ],
      [
        'another algorithm with the same secret',
        () => signToken(appSecret, { sub: 'alice' }, { alg: 'HS512' }),
      ],
    ])('rejects an app JWT with %s', async (_case, token) => {
      unauthenticatedMessageOf(await app.gql(ME, {}, await token()));
    });

    it('does not let the app’s secret mint Parley tokens for existing users', async () => {
      const victim = await signUp(app);
      const forged = await signToken(appSecret, { iss: PARLEY, aud: PARLEY, sub: victim.userId });
      unauthenticatedMessageOf(await app.gql(ME, {}, forged));
    });

    it('accepts its own tokens from signUp', async () => {
      const user = await signUp(app);
      expect(dataOf(await app.gql<Me>(ME, {}, user.token)).me.id).toBe(user.userId);
    });

    it('accepts a Parley token signed with its secret, and rejects an expired one as expired', async () => {
      const { tokenSecret } = app.config;
      if (tokenSecret === null) throw new Error('the test app has a configured token secret');
      const secret = encoder.encode(tokenSecret);
      const user = await signUp(app);
      const valid = await signToken(secret, { iss: PARLEY, aud: PARLEY, sub: user.userId });
      expect(dataOf(await app.gql<Me>(ME, {}, valid)).me.id).toBe(user.userId);

      const expired = await signToken(secret, {
        iss: PARLEY,
        aud: PARLEY,
        sub: user.userId,
        exp: now() - 60,
      });
      expect(unauthenticatedMessageOf(await app.gql(ME, {}, expired))).toMatch(/expired/i);
    });

    it('rejects a Parley token signed with another instance’s secret', async () => {
      const user = await signUp(app);
      const otherSecret = encoder.encode(randomBytes(32).toString('hex'));
      const token = await signToken(otherSecret, { iss: PARLEY, aud: PARLEY, sub: user.userId });
      expect(unauthenticatedMessageOf(await app.gql(ME, {}, token))).not.toMatch(/expired/i);
    });

    it('wants a bearer token in the Authorization header', async () => {
      const user = await signUp(app);
      expect(dataOf(await meWithHeader(app, `bearer ${user.token}`)).me.id).toBe(user.userId);
      for (const header of [
        `Basic ${Buffer.from('alice:correct horse battery').toString('base64')}`,
        `Token ${user.token}`,
        user.token,
        'Bearer',
        'Bearer ',
        `Bearer ${user.token} ${user.token}`,
        'Bearer not-a-jwt',
      ]) {
        expect(errorCodeOf(await meWithHeader(app, header)), header).toBe('UNAUTHENTICATED');
      }
    });
  });

  describe('app JWTs verified with a JWKS', () => {
    let jwksApp: TestApp;
    let jwks: Server;
    let jwksRequests = 0;
    let privateKey: CryptoKey;
    const kid = 'idp-key-1';

    beforeAll(async () => {
      const keys = await generateKeyPair('ES256');
      privateKey = keys.privateKey;
      const publicJwk = { ...(await exportJWK(keys.publicKey)), kid, alg: 'ES256', use: 'sig' };
      jwks = createServer((request, response) => {
        jwksRequests += 1;
        if (request.url !== '/jwks.json') {
          response.writeHead(404).end();
          return;
        }
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ keys: [publicJwk] }));
      });
      await new Promise<void>((listening) => jwks.listen(0, '127.0.0.1', listening));
      const { port } = jwks.address() as AddressInfo;
      jwksApp = await startTestApp({
        externalJwt: {
          issuer: ISSUER,
          audience: AUDIENCE,
          hs256Secret: null,
          jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
        },
      });
    });
    afterAll(async () => {
      await jwksApp.close();
      await new Promise<void>((closed, failed) => {
        jwks.close((error) => {
          if (error === undefined) closed();
          else failed(error);
        });
      });
    });

    it('accepts a token signed with the published key, and maps its subject once', async () => {
      const token = await signToken(privateKey, { sub: 'erin' }, { alg: 'ES256', kid });
      const first = dataOf(await jwksApp.gql<Me>(ME, {}, token));
      expect(first.me.username).toBeNull();
      const again = await signToken(privateKey, { sub: 'erin' }, { alg: 'ES256', kid });
      expect(dataOf(await jwksApp.gql<Me>(ME, {}, again)).me.id).toBe(first.me.id);
      expect(jwksRequests).toBeGreaterThan(0);
    });

    it('rejects tokens signed with another key pair, whatever their key id', async () => {
      const { privateKey: otherKey } = await generateKeyPair('ES256');
      for (const header of [
        { alg: 'ES256', kid },
        { alg: 'ES256', kid: 'unknown-key' },
      ]) {
        const token = await signToken(otherKey, { sub: 'erin' }, header);
        expect(errorCodeOf(await jwksApp.gql(ME, {}, token)), header.kid).toBe('UNAUTHENTICATED');
      }
    });

    it('rejects alg none and HS256 tokens, which no published key can verify', async () => {
      const unsigned = unsignedToken({ iss: ISSUER, aud: AUDIENCE, sub: 'erin' });
      unauthenticatedMessageOf(await jwksApp.gql(ME, {}, unsigned));
      const hs256 = await signToken(encoder.encode(randomBytes(32).toString('hex')), {
        sub: 'erin',
      });
      unauthenticatedMessageOf(await jwksApp.gql(ME, {}, hs256));
    });

    it('rejects a properly signed token for another audience', async () => {
      const token = await signToken(
        privateKey,
        { sub: 'erin', aud: 'other-service' },
        { alg: 'ES256', kid },
      );
      unauthenticatedMessageOf(await jwksApp.gql(ME, {}, token));
    });
  });

  describe('a generated token secret (no PARLEY_TOKEN_SECRET)', () => {
    it.runIf(testDatabase === 'postgres')(
      'issues working tokens, shared by instances on the same PostgreSQL database',
      async () => {
        const first = await startTestApp({ tokenSecret: null });
        try {
          // The first app owns (and drops) the database; the second only connects to it.
          const second = await startTestApp({ tokenSecret: null, database: first.config.database });
          try {
            const alice = await signUp(first);
            const bob = await signUp(second);
            expect(dataOf(await first.gql<Me>(ME, {}, alice.token)).me.id).toBe(alice.userId);
            expect(dataOf(await second.gql<Me>(ME, {}, alice.token)).me.id).toBe(alice.userId);
            expect(dataOf(await first.gql<Me>(ME, {}, bob.token)).me.id).toBe(bob.userId);
            unauthenticatedMessageOf(await app.gql(ME, {}, alice.token));
          } finally {
            await second.close();
          }
        } finally {
          await first.close();
        }
      },
    );

    it.runIf(testDatabase === 'pglite')(
      'issues working tokens, still valid after a restart on the same PGlite data directory',
      async () => {
        const dataDir = await mkdtemp(join(tmpdir(), 'parley-auth-'));
        try {
          const database = { kind: 'pglite', dataDir } as const;
          const before = await startTestApp({ tokenSecret: null, database });
          let alice: { token: string; userId: string };
          try {
            alice = await signUp(before);
            expect(dataOf(await before.gql<Me>(ME, {}, alice.token)).me.id).toBe(alice.userId);
            unauthenticatedMessageOf(await app.gql(ME, {}, alice.token));
          } finally {
            await before.close();
          }
          const after = await startTestApp({ tokenSecret: null, database });
          try {
            expect(dataOf(await after.gql<Me>(ME, {}, alice.token)).me.id).toBe(alice.userId);
          } finally {
            await after.close();
          }
        } finally {
          await rm(dataDir, { recursive: true, force: true });
        }
      },
    );
  });
});
