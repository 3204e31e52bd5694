import { Args, ID, Resolver, Subscription } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/current-principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { type DeviceEvent, DeviceEventUnion } from './live-event.model.js';
import { LiveService } from './live.service.js';

/** The one live subscription of a device (graphql-ws). */
@Resolver()
export class LiveResolver {
  constructor(private readonly live: LiveService) {}

  @Subscription(() => DeviceEventUnion, {
    description:
      "A device's new log entries, Welcomes, roster changes and key-package warnings; resume with messages(after:)",
    resolve: (event: DeviceEvent) => event,
  })
  events(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
  ): Promise<AsyncIterableIterator<DeviceEvent, void>> {
    return this.live.stream(principal.userId, deviceId);
  }
}
