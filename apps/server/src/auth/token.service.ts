import { randomBytes, randomUUID } from 'node:crypto';
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
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import type { Principal } from './principal.js';

const ALGORITHM = 'HS256';
const TOKEN_SECRET = 'token_secret';

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

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @InjectDataSource() private readonly dataSource: DataSource,
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

  /** A bearer token for the user, valid for the configured time. */
  async issue(userId: string): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg: ALGORITHM })
      .setSubject(userId)
      .setIssuer(this.issuer)
      .setAudience(this.issuer)
      .setIssuedAt()
      .setJti(randomUUID())
      .setExpirationTime(`${this.config.tokenTtlSeconds}s`)
      .sign(this.signingSecret());
  }

  /** Verifies a bearer token, Parley's own or an app's, and says whose it is. */
  async authenticate(token: string): Promise<Principal> {
    let issuer: string | undefined;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      throw unauthenticated('The bearer token is malformed');
    }
    const external = this.config.externalJwt;
    if (external !== null && this.externalKey !== undefined && issuer === external.issuer) {
      const payload = await this.verify(
        token,
        this.externalKey,
        external.issuer,
        external.audience,
      );
      return {
        userId: await this.userForExternalSubject(`${external.issuer} ${payload.sub ?? ''}`),
      };
    }
    const payload = await this.verify(token, this.signingSecret(), this.issuer, this.issuer);
    return { userId: payload.sub ?? '' };
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
    const users = this.dataSource.getRepository(UserEntity);
    await users
      .createQueryBuilder()
      .insert()
      .values({ id: randomUUID(), externalSubject, username: null, passwordHash: null })
      .orIgnore()
      .execute();
    const user = await users.findOneByOrFail({ externalSubject });
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
