import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, Repository } from 'typeorm';
import { decoyHash, hashPassword, verifyPassword } from '../auth/password-hasher.js';
import { TokenService } from '../auth/token.service.js';
import { limitExceeded, notFound } from '../common/domain.errors.js';
import { isUuid } from '../common/uuid.js';
import { isUniqueViolation } from '../database/errors.js';
import { RateLimitService } from '../rate-limits/rate-limit.service.js';
import type { AuthPayloadModel, UserModel } from './account.model.js';
import { badCredentials, usernameTaken } from './accounts.errors.js';
import { UserEntity } from './user.entity.js';

const MAX_USERS_PER_LOOKUP = 500;

const toModel = (user: UserEntity): UserModel => ({
  id: user.id,
  username: user.username,
  createdAt: user.createdAt,
});

/** Sign-up and sign-in with username and password. */
@Injectable()
export class AccountsService {
  constructor(
    @InjectRepository(UserEntity) private readonly users: Repository<UserEntity>,
    private readonly tokens: TokenService,
    private readonly rateLimits: RateLimitService,
  ) {}

  /**
   * Creates a user; fails with CONFLICT when the username is taken, and with RATE_LIMITED when
   * the client address has made too many accounts lately (counted before the costly hash).
   */
  async signUp(username: string, password: string, address: string): Promise<AuthPayloadModel> {
    await this.rateLimits.consume('signUpsPerAddress', address);
    const passwordHash = await hashPassword(password);
    let user: UserEntity;
    try {
      user = await this.users.save(
        this.users.create({
          id: randomUUID(),
          username: username.toLowerCase(),
          passwordHash,
          externalSubject: null,
        }),
      );
    } catch (error) {
      if (isUniqueViolation(error)) throw usernameTaken();
      throw error;
    }
    return { token: await this.tokens.issue(user.id), user: toModel(user) };
  }

  /**
   * Checks the password in constant time, whether or not the user exists. Before any work:
   * RATE_LIMITED when the address tried too often this minute, or while the username is locked
   * out after failures (a lock-out that doubles with each failure past the free ones; unknown
   * usernames are counted alike, so that the answers do not tell which exist).
   */
  async signIn(username: string, password: string, address: string): Promise<AuthPayloadModel> {
    const name = username.toLowerCase();
    await this.rateLimits.consume('signInsPerAddress', address);
    await this.rateLimits.assertSignInAllowed(name);
    const user = await this.users.findOneBy({ username: name });
    const valid = await verifyPassword(password, user?.passwordHash ?? (await decoyHash()));
    if (user === null || !valid) {
      await this.rateLimits.signInFailed(name);
      throw badCredentials();
    }
    await this.rateLimits.signInSucceeded(name);
    return { token: await this.tokens.issue(user.id), user: toModel(user) };
  }

  /** A user by username (case-insensitive), so that people can find each other. */
  async byUsername(username: string): Promise<UserModel> {
    const user = await this.users.findOneBy({ username: username.toLowerCase() });
    if (user === null) throw notFound('User');
    return toModel(user);
  }

  /** Users by id (unknown ids are left out), so that clients can show who said what. */
  async byIds(ids: string[]): Promise<UserModel[]> {
    if (ids.length > MAX_USERS_PER_LOOKUP)
      throw limitExceeded('Users per lookup', MAX_USERS_PER_LOOKUP);
    const users = await this.users.findBy({ id: In(ids.filter(isUuid)) });
    return users.map(toModel);
  }

  /** The calling user. */
  async get(userId: string): Promise<UserModel> {
    const user = await this.users.findOneBy({ id: userId });
    if (user === null) throw notFound('User');
    return toModel(user);
  }
}
