import { Args, Mutation, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/current-principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { SendMessageInput } from '../messages/message.input.js';
import { RateLimitService } from '../rate-limits/rate-limit.service.js';
import { SignalsService } from './signals.service.js';

/** Ephemeral signals: typing indicators and read receipts, never stored. */
@Resolver()
export class SignalsResolver {
  constructor(
    private readonly signals: SignalsService,
    private readonly rateLimits: RateLimitService,
  ) {}

  @Mutation(() => Boolean, {
    description:
      "Sends an application message (PrivateMessage) to the conversation's live devices only, as an EphemeralEvent; stored nowhere",
  })
  async sendEphemeral(
    @CurrentPrincipal() principal: Principal,
    @Args('input') input: SendMessageInput,
  ): Promise<boolean> {
    // The same budget as sendMessage: a signal costs the server as much as a message to check.
    await this.rateLimits.consume('messagesPerDevice', `${principal.userId}:${input.deviceId}`);
    return this.signals.send(principal.userId, input);
  }
}
