import type { EventBus, OutgoingEvent } from '../events/event-bus.js';
import type { Metrics } from './metrics.js';

/**
 * Times every publish on `bus` and counts the failures (bus down, timed out, shut down), whatever
 * the backend. The caller's outcome is unchanged: the same resolution or the same error.
 */
export function meterPublishes<B extends EventBus>(bus: B, metrics: Metrics): B {
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
