import type { Logger } from '@nestjs/common';
import type { EventBus } from '../events/event-bus.js';
import type { LiveEvent } from './live-event.js';

/** An event and the channel it goes to. */
export interface Publication {
  channel: string;
  event: LiveEvent;
}

/**
 * Publishes what a committed transaction stored. A failure here must not fail the request: the
 * data is stored, live delivery is best effort, and subscribers that miss an event see the gap
 * in `seq` and resume from the log. So failures are logged (type and channel, never payload).
 */
export async function publishCommitted(
  bus: EventBus,
  logger: Logger,
  publications: Publication[],
): Promise<void> {
  for (const { channel, event } of publications) {
    try {
      await bus.publish(channel, event);
    } catch (error) {
      logger.warn(
        `Could not publish ${event.type} to ${channel}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
}
