import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import {
  createRemoteJWKSet,
  decodeJwt,
  errors as joseErrors,
  type JWTPayload,
  jwtVerify,
  type JWTVerifyGetKey,
  SignJWT,
} from 'jose';
import { DataSource } from 'typeorm';
import { ServerSecretEntity } from '../accounts/server-secret.entity.js';
import { UserEntity } from '../accounts/user.entity.js';
import { unauthenticated } from '../common/domain.errors.js';
import { isUuid } from '../common/uuid.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import type { Principal } from './principal.js';
import { TokenRevocations, type UserTokenState } from './token-revocations.js';

const ALGORITHM = 'HS256';
const TOKEN_SECRET = 'token_secret';
/** The claim of Parley's tokens that carries the user's token generation. */
const GENERATION_CLAIM = 'gen';
// App subjects already mapped to Parley users (the mapping never changes once made).
const MAX_CACHED_SUBJECTS = 100_000;

/** A token's id: its `jti`, or (app tokens without one) the SHA-256 of the token. */
function tokenIdOf(token: string, payload: JWTPayload): string {
  return typeof payload.jti === 'string' && payload.jti !== ''
    ? payload.jti
    : `sha256:${createHash('sha256').update(token).digest('base64url')}`;
}

const revoked = () => unauthenticated('The bearer token has been revoked');

/**
 * The credential of a token whose signature and claims verified. Its principal is made once and
 * shared by every request and socket the token authenticates (it is never changed).
 */
function credentialOf(
  token: string,
  payload: JWTPayload,
  userId: string,
  external: boolean,
): TokenCredential {
  const expiresAt = payload.exp ?? 0;
  return {
    principal: Object.freeze({
      userId,
      tokenId: tokenIdOf(token, payload),
      expiresAt: new Date(expiresAt * 1000),
    }),
    expiresAt,
    external,
    // Tokens issued before generations existed carry none: they are of generation 0.
    generation: external ? undefined : (payload[GENERATION_CLAIM] ?? 0),
    issuedAt: external ? payload.iat : undefined,
  };
}

// Tokens whose signature verified, kept until they expire; the least recently used go first.
const MAX_VERIFIED_TOKENS = 10_000;

/**
 * What verifying a token's signature and claims established, which stays true until `exp`: all
 * that deciding later whether the token still holds needs (its expiry and revocation), without
 * the token itself. A live socket keeps this rather than its bearer token.
 */
export interface TokenCredential {
  /** Whose token it is; handed to every operation that the token authenticates. */
  readonly principal: Principal;
  /** `exp`, Unix seconds (required by verify()). */
  readonly expiresAt: number;
  /** An app's JWT (revoked by `iat`), not one of Parley's (revoked by generation). */
  readonly external: boolean;
  /** The generation claim of one of Parley's tokens (none: generation 0). */
  readonly generation: unknown;
  /** `iat` of an app's JWT, Unix seconds, if it has one. */
  readonly issuedAt: number | undefined;
}

/**
 * Issues Parley's own bearer tokens (HS256 JWTs) and verifies them, as well as JWTs that an
 * integrating app's identity provider issued (HS256 secret or JWKS), mapping their subjects
 * to Parley users.
 */
@Injectable()
export class TokenService implements OnModuleInit {
  private readonly logger = new Logger(TokenService.name);
  private readonly issuer: string;
  private secret: Uint8Array | undefined;
  private readonly externalKey: Uint8Array | JWTVerifyGetKey | undefined;
  private readonly externalUsers = new Map<string, string>();
  private readonly verifiedTokens = new Map<string, TokenCredential>();

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly revocations: TokenRevocations,
  ) {
    this.issuer = `parley:${config.domain}`;
    const external = config.externalJwt;
    if (external?.hs256Secret != null) {
      this.externalKey = new TextEncoder().encode(external.hs256Secret);
    } else if (external?.jwksUrl != null) {
      this.externalKey = createRemoteJWKSet(new URL(external.jwksUrl));
    }
  }

  async onModuleInit(): Promise<void> {
    this.secret = new TextEncoder().encode(this.config.tokenSecret ?? (await this.sharedSecret()));
  }

  /** A bearer token for the user, valid for the configured time and until they sign out. */
  async issue(userId: string): Promise<string> {
    const generation = await this.revocations.currentGeneration(userId);
    return new SignJWT({ [GENERATION_CLAIM]: generation })
      .setProtectedHeader({ alg: ALGORITHM })
      .setSubject(userId)
      .setIssuer(this.issuer)
      .setAudience(this.issuer)
      .setIssuedAt()
      .setJti(randomUUID())
      .setExpirationTime(`${this.config.tokenTtlSeconds}s`)
      .sign(this.signingSecret());
  }

  /**
   * Verifies a bearer token, Parley's own or an app's, and says whose it is. A revoked token
   * (signOut, or signOutEverywhere since it was issued) is refused like one that does not verify;
   * the check costs no query while the user's state is cached (see TokenRevocations), and the
   * signature is verified once per token until it expires.
   */
  async authenticate(token: string): Promise<Principal> {
    return (await this.authenticateCredential(token)).principal;
  }

  /**
   * {@link authenticate}, answering with what the token established, so that a holder (a live
   * socket) can have it checked again by {@link recheck} without keeping the token.
   */
  async authenticateCredential(token: string): Promise<TokenCredential> {
    const credential = this.cachedVerification(token) ?? (await this.verifyNew(token));
    await this.recheck(credential);
    return credential;
  }

  /**
   * Whether a token that verified before still holds: refused, as {@link authenticate} would
   * refuse the token itself, once it has expired or been revoked (signOut, signOutEverywhere).
   */
  async recheck(credential: TokenCredential): Promise<Principal> {
    // jose's rule, as verify() applies it: expired once `exp` is not after the current second.
    if (credential.expiresAt <= Math.floor(Date.now() / 1000)) {
      throw unauthenticated('The bearer token has expired');
    }
    const { principal } = credential;
    const state = await this.stateOf(principal.userId);
    if (credential.external) {
      // App JWTs carry no generation: signOutEverywhere refuses those issued until then (by
      // `iat`, whole seconds, so one issued in that same second is refused too).
      const iat = credential.issuedAt;
      if (state.revokedBefore !== null && (iat === undefined || iat <= state.revokedBefore)) {
        throw revoked();
      }
    } else if (credential.generation !== state.generation) {
      throw revoked();
    }
    if (state.revokedIds.has(principal.tokenId)) throw revoked();
    return principal;
  }

  /**
   * A token whose signature and claims verified before and which has not expired since: the
   * signature check (~0.2 ms) is skipped, nothing else is — revocation is decided afresh on every
   * request by the caller, so a signOut takes effect at once whatever this cache holds.
   */
  private cachedVerification(token: string): TokenCredential | undefined {
    const hit = this.verifiedTokens.get(token);
    if (hit === undefined) return undefined;
    this.verifiedTokens.delete(token);
    // jose's rule: expired once `exp` is not after the current whole second.
    if (hit.expiresAt <= Math.floor(Date.now() / 1000)) return undefined;
    // Re-inserted: the Map's order is least recently used first.
    this.verifiedTokens.set(token, hit);
    return hit;
  }

  private async verifyNew(token: string): Promise<TokenCredential> {
    let issuer: string | undefined;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      throw unauthenticated('The bearer token is malformed');
    }
    const external = this.config.externalJwt;
    let verified: TokenCredential;
    if (external !== null && this.externalKey !== undefined && issuer === external.issuer) {
      const payload = await this.verify(
        token,
        this.externalKey,
        external.issuer,
        external.audience,
      );
      const userId = await this.userForExternalSubject(`${external.issuer} ${payload.sub ?? ''}`);
      verified = credentialOf(token, payload, userId, true);
    } else {
      const payload = await this.verify(token, this.signingSecret(), this.issuer, this.issuer);
      verified = credentialOf(token, payload, payload.sub ?? '', false);
    }
    this.verifiedTokens.set(token, verified);
    if (this.verifiedTokens.size > MAX_VERIFIED_TOKENS) {
      const oldest = this.verifiedTokens.keys().next();
      if (oldest.done !== true) this.verifiedTokens.delete(oldest.value);
    }
    return verified;
  }

  private async stateOf(userId: string): Promise<UserTokenState> {
    const state = isUuid(userId) ? await this.revocations.state(userId) : null;
    if (state === null) throw unauthenticated('The bearer token names no user');
    return state;
  }

  private async verify(
    token: string,
    key: Uint8Array | JWTVerifyGetKey,
    issuer: string,
    audience: string,
  ): Promise<JWTPayload> {
    try {
      const options = { issuer, audience, requiredClaims: ['sub', 'exp'] };
      const { payload } =
        key instanceof Uint8Array
          ? await jwtVerify(token, key, { ...options, algorithms: [ALGORITHM] })
          : await jwtVerify(token, key, options);
      if (typeof payload.sub !== 'string' || payload.sub === '') throw unauthenticated();
      return payload;
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired)
        throw unauthenticated('The bearer token has expired');
      if (error instanceof joseErrors.JOSEError)
        throw unauthenticated('The bearer token does not verify');
      throw error;
    }
  }

  /** App users become Parley users the first time they show up. */
  private async userForExternalSubject(externalSubject: string): Promise<string> {
    const known = this.externalUsers.get(externalSubject);
    if (known !== undefined) return known;
    const users = this.dataSource.getRepository(UserEntity);
    await users
      .createQueryBuilder()
      .insert()
      .values({ id: randomUUID(), externalSubject, username: null, passwordHash: null })
      .orIgnore()
      .execute();
    const user = await users.findOneByOrFail({ externalSubject });
    if (this.externalUsers.size >= MAX_CACHED_SUBJECTS) this.externalUsers.clear();
    this.externalUsers.set(externalSubject, user.id);
    return user.id;
  }

  /** With no configured secret, all instances share one generated once and kept in the database. */
  private async sharedSecret(): Promise<string> {
    const secrets = this.dataSource.getRepository(ServerSecretEntity);
    await secrets
      .createQueryBuilder()
      .insert()
      .values({ name: TOKEN_SECRET, value: randomBytes(32).toString('base64') })
      .orIgnore()
      .execute();
    this.logger.warn(
      'PARLEY_TOKEN_SECRET is not set: using a generated secret kept in the database',
    );
    return (await secrets.findOneByOrFail({ name: TOKEN_SECRET })).value;
  }

  private signingSecret(): Uint8Array {
    if (this.secret === undefined) throw new Error('TokenService used before module init');
    return this.secret;
  }
}
