import type { EventBus, OutgoingEvent } from '../events/event-bus.js';
import type { Metrics } from './metrics.js';

/**
 * Times every publish on `bus` and counts the failures (bus down, timed out, shut down), whatever
 * the backend, and reports the bus's state, outbox and losses at scrape time. The caller's outcome
 * is unchanged: the same resolution or the same error. The outbox sends through `bus.publish` as
 * it is when called, so its publishes are the ones timed here.
 */
export function meterEventBus<B extends EventBus>(bus: B, metrics: Metrics): B {
  metrics.watchBus(() => bus.status());
  const publish = bus.publish.bind(bus);
  // Generic like EventBus.publish, whose signature it must keep.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  bus.publish = async <E extends OutgoingEvent>(channel: string, event: E): Promise<void> => {
    const start = performance.now();
    try {
      await publish(channel, event);
    } catch (error) {
      metrics.published((performance.now() - start) / 1000, false);
      throw error;
    }
    metrics.published((performance.now() - start) / 1000, true);
  };
  return bus;
}
