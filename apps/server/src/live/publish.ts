import type { Logger } from '@nestjs/common';
import type { EventBus } from '../events/event-bus.js';
import type { LiveEvent } from './live-event.js';

/** An event and the channel it goes to. */
export interface Publication {
  channel: string;
  event: LiveEvent;
}

/**
 * Hands what a committed transaction stored to the bus's outbox and returns at once: the request
 * never waits on the bus (a frozen Redis must not stall writers). The data is stored; live
 * delivery is best effort, events of one channel leave in the order given, and when one cannot
 * go out the bus ends this process's live streams so that their clients resume from the log.
 */
export function publishCommitted(
  bus: EventBus,
  logger: Logger,
  publications: Publication[],
): Promise<void> {
  for (const { channel, event } of publications) {
    if (!bus.enqueue(channel, event)) {
      // Counted and reported by the bus; here only the trace of which write it was (no payload).
      logger.debug(`Not published (event bus down or full): ${event.type} to ${channel}`);
    }
  }
  // A promise still, so that callers written for the awaited form need no change.
  return Promise.resolve();
}
