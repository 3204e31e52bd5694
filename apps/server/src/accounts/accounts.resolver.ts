import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/current-principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { Public } from '../auth/public.decorator.js';
import { ClientAddress } from '../rate-limits/client-address.js';
import { CredentialsInput } from './account.input.js';
import { AuthPayloadModel, UserModel } from './account.model.js';
import { AccountsService } from './accounts.service.js';

/** Accounts: sign up, sign in, who am I. */
@Resolver(() => UserModel)
export class AccountsResolver {
  constructor(private readonly accounts: AccountsService) {}

  @Public()
  @Mutation(() => AuthPayloadModel, { description: 'Creates a user with a password' })
  signUp(
    @Args('input') input: CredentialsInput,
    @ClientAddress() address: string,
  ): Promise<AuthPayloadModel> {
    return this.accounts.signUp(input.username, input.password, address);
  }

  @Public()
  @Mutation(() => AuthPayloadModel, {
    description: 'Exchanges a username and password for a token',
  })
  signIn(
    @Args('input') input: CredentialsInput,
    @ClientAddress() address: string,
  ): Promise<AuthPayloadModel> {
    return this.accounts.signIn(input.username, input.password, address);
  }

  @Query(() => UserModel, { description: 'A user by username (case-insensitive)' })
  user(@Args('username') username: string): Promise<UserModel> {
    return this.accounts.byUsername(username);
  }

  @Query(() => [UserModel], { description: 'Users by id (up to 500; unknown ids are left out)' })
  users(@Args('ids', { type: () => [ID] }) ids: string[]): Promise<UserModel[]> {
    return this.accounts.byIds(ids);
  }

  @Query(() => UserModel, { description: 'The calling user' })
  me(@CurrentPrincipal() principal: Principal): Promise<UserModel> {
    return this.accounts.get(principal.userId);
  }
}
