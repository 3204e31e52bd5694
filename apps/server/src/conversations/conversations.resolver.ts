import {
  Args,
  Context,
  ID,
  Int,
  Mutation,
  Parent,
  Query,
  ResolveField,
  Resolver,
} from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/current-principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { RateLimitService } from '../rate-limits/rate-limit.service.js';
import {
  CreateConversationInput,
  SetMemberRoleInput,
  SubmitCommitBundleInput,
} from './conversation.input.js';
import {
  CommitResultModel,
  ConversationMemberModel,
  ConversationModel,
  type ConversationSummary,
  WelcomeModel,
} from './conversation.model.js';
import { CONVERSATIONS_PAGE_DEFAULT, requestBatch } from './conversation-reads.js';
import { ConversationsService } from './conversations.service.js';
import { JoinableConversationModel } from './joinable-conversation.model.js';

/** Conversations (MLS groups): create, commit, read the roster, GroupInfo and Welcomes. */
@Resolver(() => ConversationModel)
export class ConversationsResolver {
  constructor(
    private readonly conversationsService: ConversationsService,
    private readonly rateLimits: RateLimitService,
  ) {}

  @Mutation(() => ConversationModel, {
    description: "Registers an MLS group the caller's device created (epoch 0, alone at leaf 0)",
  })
  createConversation(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: CreateConversationInput,
  ): Promise<ConversationSummary> {
    return this.conversationsService.create(principal.userId, input);
  }

  @Mutation(() => ConversationModel, {
    description:
      "An admin sets a user's role in a group (FORBIDDEN with reason ADMIN_REQUIRED otherwise; LAST_ADMIN if no admin would remain)",
  })
  setMemberRole(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: SetMemberRoleInput,
  ): Promise<ConversationSummary> {
    return this.conversationsService.setMemberRole(principal.userId, input);
  }

  @Mutation(() => CommitResultModel, {
    description:
      'Submits a commit for the current epoch with its GroupInfo and Welcome; STALE_EPOCH if another won',
  })
  async submitCommitBundle(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: SubmitCommitBundleInput,
  ): Promise<CommitResultModel> {
    await this.rateLimits.consume(
      'commitBundlesPerDevice',
      `${principal.userId}:${input.deviceId}`,
    );
    return this.conversationsService.submitCommitBundle(principal.userId, input);
  }

  @Query(() => [ConversationModel], {
    description:
      'The conversations a device of the caller is in, oldest first (creation time, then id), `first` (1–100, default 50) after the cursor `after`; fewer than `first` means the list is done',
  })
  conversations(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
    @Args('first', { type: () => Int, defaultValue: CONVERSATIONS_PAGE_DEFAULT }) first: number,
    @Args('after', {
      type: () => String,
      nullable: true,
      description: 'The `cursor` of the last conversation of the previous page',
    })
    after: string | null,
  ): Promise<ConversationSummary[]> {
    return this.conversationsService.list(principal.userId, deviceId, first, after ?? null);
  }

  /** The roster, for all conversations of the request in one query. */
  @ResolveField('members', () => [ConversationMemberModel])
  membersOf(
    @Parent() conversation: ConversationSummary,
    @Context() context: object,
  ): Promise<ConversationMemberModel[]> {
    return requestBatch(context, 'members', (ids) => this.conversationsService.members(ids)).load(
      conversation.id,
    );
  }

  /** The GroupInfo, read only when selected, for all conversations of the request at once. */
  @ResolveField('groupInfo', () => BytesScalar, { nullable: true })
  groupInfoOf(
    @Parent() conversation: ConversationSummary,
    @Context() context: object,
  ): Promise<Buffer | null> {
    return requestBatch(context, 'groupInfo', (ids) =>
      this.conversationsService.groupInfos(ids),
    ).load(conversation.id);
  }

  @Query(() => ConversationModel, { description: 'One conversation a device of the caller is in' })
  conversation(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
    @Args('conversationId', { type: () => ID }) conversationId: string,
  ): Promise<ConversationSummary> {
    return this.conversationsService.get(principal.userId, deviceId, conversationId);
  }

  @Query(() => BytesScalar, {
    nullable: true,
    description:
      'The newest GroupInfo (MLSMessage); null before the first commit of a group created without one',
  })
  groupInfo(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
    @Args('conversationId', { type: () => ID }) conversationId: string,
  ): Promise<Buffer | null> {
    return this.conversationsService.groupInfo(principal.userId, deviceId, conversationId);
  }

  @Query(() => [JoinableConversationModel], {
    description:
      "Conversations of the device's user it never was in, to join by external commit (RFC 9420 §12.4.3.2)",
  })
  joinableConversations(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
  ): Promise<JoinableConversationModel[]> {
    return this.conversationsService.joinable(principal.userId, deviceId);
  }

  @Query(() => [WelcomeModel], { description: 'Welcomes waiting for a device of the caller' })
  welcomes(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
  ): Promise<WelcomeModel[]> {
    return this.conversationsService.welcomes(principal.userId, deviceId);
  }

  @Mutation(() => ID, {
    description:
      'The device leaves: it can no longer read or post, and members are told to commit its removal',
  })
  async leaveConversation(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
    @Args('conversationId', { type: () => ID }) conversationId: string,
  ): Promise<string> {
    await this.conversationsService.leave(principal.userId, deviceId, conversationId);
    return conversationId;
  }

  @Mutation(() => ID, { description: 'Drops a processed Welcome; returns its id' })
  async acknowledgeWelcome(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
    @Args('welcomeId', { type: () => ID }) welcomeId: string,
  ): Promise<string> {
    await this.conversationsService.acknowledgeWelcome(principal.userId, deviceId, welcomeId);
    return welcomeId;
  }
}
