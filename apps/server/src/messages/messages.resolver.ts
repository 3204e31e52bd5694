import { Args, ID, Int, Mutation, Query, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/current-principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { SafeIntScalar } from '../common/scalars/safe-int.scalar.js';
import { RateLimitService } from '../rate-limits/rate-limit.service.js';
import { SendMessageInput, SetMessageTimerInput } from './message.input.js';
import { LogEntryModel, LogPageModel } from './message.model.js';
import { MessagesService } from './messages.service.js';

/** Application messages and the conversation log. */
@Resolver(() => LogEntryModel)
export class MessagesResolver {
  constructor(
    private readonly messagesService: MessagesService,
    private readonly rateLimits: RateLimitService,
  ) {}

  @Mutation(() => LogEntryModel, {
    description: 'Stores an application message (PrivateMessage) once',
  })
  async sendMessage(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: SendMessageInput,
  ): Promise<LogEntryModel> {
    // One in-memory count per request (see RateLimitService): no round trip on the send path.
    await this.rateLimits.consume('messagesPerDevice', `${principal.userId}:${input.deviceId}`);
    return this.messagesService.send(principal.userId, input);
  }

  @Mutation(() => LogEntryModel, {
    description:
      "Changes the conversation's message timer: a TIMER entry in the log, in order with the messages, carrying the change encrypted (MLS application message) and its value for the server",
  })
  async setMessageTimer(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: SetMessageTimerInput,
  ): Promise<LogEntryModel> {
    // A log entry like a message: the same budget.
    await this.rateLimits.consume('messagesPerDevice', `${principal.userId}:${input.deviceId}`);
    return this.messagesService.setTimer(principal.userId, input);
  }

  @Query(() => LogPageModel, { description: 'Log entries after a sequence number, in order' })
  messages(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
    @Args('conversationId', { type: () => ID }) conversationId: string,
    @Args('after', { type: () => SafeIntScalar, defaultValue: '0' }) after: string,
    @Args('first', { type: () => Int, defaultValue: 100 }) first: number,
  ): Promise<LogPageModel> {
    return this.messagesService.page(principal.userId, deviceId, conversationId, after, first);
  }

  @Mutation(() => SafeIntScalar, {
    description: "Moves a device's cursor forward; returns the cursor",
  })
  acknowledge(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
    @Args('conversationId', { type: () => ID }) conversationId: string,
    @Args('seq', { type: () => SafeIntScalar }) seq: string,
  ): Promise<string> {
    return this.messagesService.acknowledge(principal.userId, deviceId, conversationId, seq);
  }
}
