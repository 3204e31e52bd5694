import { Args, ID, Resolver, Subscription } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/current-principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { ClientAddress } from '../rate-limits/client-address.js';
import { RateLimitService } from '../rate-limits/rate-limit.service.js';
import { type DeviceEvent, DeviceEventUnion } from './live-event.model.js';
import { LiveService } from './live.service.js';

/** The one live subscription of a device (graphql-ws). */
@Resolver()
export class LiveResolver {
  constructor(
    private readonly live: LiveService,
    private readonly rateLimits: RateLimitService,
  ) {}

  @Subscription(() => DeviceEventUnion, {
    description:
      "A device's new log entries, Welcomes, roster changes and key-package warnings; resume with messages(after:)",
    resolve: (event: DeviceEvent) => event,
  })
  async events(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
    @ClientAddress() address: string,
  ): Promise<AsyncIterableIterator<DeviceEvent, void>> {
    await this.rateLimits.consumeAll([
      { name: 'subscriptionsPerUser', key: principal.userId },
      { name: 'subscriptionsPerAddress', key: address },
    ]);
    return this.live.stream(principal.userId, deviceId);
  }
}
