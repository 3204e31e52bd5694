import { Mutation, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from './current-principal.decorator.js';
import type { Principal } from './principal.js';
import { TokenRevocations } from './token-revocations.js';

/** Signing out: the token in use, or every token of the user. */
@Resolver()
export class AuthResolver {
  constructor(private readonly revocations: TokenRevocations) {}

  @Mutation(() => Boolean, {
    description:
      'Revokes the bearer token of this request: it fails from the next request on, and live sockets opened with it are closed',
  })
  async signOut(@CurrentPrincipal() principal: Principal): Promise<boolean> {
    await this.revocations.revokeToken(principal.userId, principal.tokenId, principal.expiresAt);
    return true;
  }

  @Mutation(() => Boolean, {
    description:
      "Revokes every token of the caller issued until now, this one included, on every instance; the user's live sockets are closed. Sign in again for a new token",
  })
  async signOutEverywhere(@CurrentPrincipal() principal: Principal): Promise<boolean> {
    await this.revocations.revokeAll(principal.userId);
    return true;
  }
}
