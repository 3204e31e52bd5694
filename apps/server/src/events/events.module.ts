import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { meterEventBus } from '../metrics/bus-metrics.js';
import { Metrics } from '../metrics/metrics.js';
import { EventBus } from './event-bus.js';
import { InProcessEventBus } from './in-process-event-bus.js';
import { RedisEventBus } from './redis-event-bus.js';

/**
 * Provides {@link EventBus} everywhere: Redis when REDIS_URL is set (the boot fails if Redis is
 * unreachable), in-process otherwise. Closes it when the application shuts down.
 */
@Global()
@Module({
  providers: [
    {
      provide: EventBus,
      // Metrics are optional so that the bus also stands alone (its own specs).
      inject: [CONFIG, { token: Metrics, optional: true }],
      useFactory: async (config: Config, metrics?: Metrics): Promise<EventBus> => {
        const bus =
          config.redisUrl === null
            ? new InProcessEventBus()
            : await RedisEventBus.connect(config.redisUrl);
        return metrics === undefined ? bus : meterEventBus(bus, metrics);
      },
    },
  ],
  exports: [EventBus],
})
export class EventsModule implements OnApplicationShutdown {
  constructor(@Inject(EventBus) private readonly bus: EventBus) {}

  /** After the HTTP server stopped taking requests: nothing publishes or subscribes any more. */
  async onApplicationShutdown(): Promise<void> {
    await this.bus.close();
  }
}
