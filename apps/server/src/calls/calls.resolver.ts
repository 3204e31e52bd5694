import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/current-principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { RateLimitService } from '../rate-limits/rate-limit.service.js';
import { CallDeviceInput, StartCallInput } from './call.input.js';
import { CallModel, IceServerModel } from './call.model.js';
import { CallsService } from './calls.service.js';

/** Call state: start, join, heartbeat, leave, end; the running call; ICE servers. */
@Resolver(() => CallModel)
export class CallsResolver {
  constructor(
    private readonly calls: CallsService,
    private readonly rateLimits: RateLimitService,
  ) {}

  /** Every call mutation costs what a message does: each is a write and a live event. */
  private consume(principal: Principal, deviceId: string): Promise<void> {
    return this.rateLimits.consume('messagesPerDevice', `${principal.userId}:${deviceId}`);
  }

  @Mutation(() => CallModel, {
    description:
      "Starts a call in a conversation (the caller's device joins it; the others ring). CONFLICT with reason CALL_RUNNING and the running call's id if there is one",
  })
  async startCall(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: StartCallInput,
  ): Promise<CallModel> {
    await this.consume(principal, input.deviceId);
    return this.calls.start(principal.userId, input);
  }

  @Mutation(() => CallModel, {
    description: 'Joins a running call of a conversation of the device',
  })
  async joinCall(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: CallDeviceInput,
  ): Promise<CallModel> {
    await this.consume(principal, input.deviceId);
    return this.calls.join(principal.userId, input);
  }

  @Mutation(() => CallModel, {
    description:
      'A participant is still there; one silent for the heartbeat timeout is dropped from the call',
  })
  async callHeartbeat(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: CallDeviceInput,
  ): Promise<CallModel> {
    await this.consume(principal, input.deviceId);
    return this.calls.heartbeat(principal.userId, input);
  }

  @Mutation(() => CallModel, { description: 'Leaves a call; the last participant out ends it' })
  async leaveCall(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: CallDeviceInput,
  ): Promise<CallModel> {
    await this.consume(principal, input.deviceId);
    return this.calls.leave(principal.userId, input);
  }

  @Mutation(() => CallModel, {
    description:
      'Ends a call for everyone: the user who started it or an admin of the conversation (FORBIDDEN, ADMIN_REQUIRED, otherwise)',
  })
  async endCall(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: CallDeviceInput,
  ): Promise<CallModel> {
    await this.consume(principal, input.deviceId);
    return this.calls.end(principal.userId, input);
  }

  @Query(() => CallModel, { nullable: true, description: "The conversation's running call" })
  runningCall(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
    @Args('conversationId', { type: () => ID }) conversationId: string,
  ): Promise<CallModel | null> {
    return this.calls.running(principal.userId, deviceId, conversationId);
  }

  @Query(() => [IceServerModel], {
    description: 'STUN/TURN servers for WebRTC, from the server configuration (PARLEY_ICE_SERVERS)',
  })
  iceServers(): IceServerModel[] {
    return this.calls.iceServers();
  }
}
