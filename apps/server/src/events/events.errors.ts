import type { DomainErrorCode } from '@parley/protocol';

/** Why a stream ended early; either way the client resumes from its cursor (`messages(after:)`). */
export type EventStreamErrorCode = Extract<DomainErrorCode, 'SLOW_CONSUMER' | 'EVENTS_UNAVAILABLE'>;

/** A stream ended before its consumer closed it; live delivery stopped, the log did not. */
export abstract class EventStreamError extends Error {
  /** Stable code, suitable for a GraphQL `extensions.code`. */
  abstract readonly code: EventStreamErrorCode;
}

/**
 * The consumer let more than `maxBuffered` events pile up, or let the oldest wait longer than
 * `maxLagMs`, so the stream was cut off.
 */
export class SlowConsumerError extends EventStreamError {
  readonly code = 'SLOW_CONSUMER';
  /** Set when the consumer was cut for its lag in time rather than a count. */
  maxLagMs: number | null = null;

  constructor(
    readonly maxBuffered: number,
    message = `More than ${maxBuffered} events were waiting for a slow consumer; resume from the log`,
  ) {
    super(message);
    this.name = 'SlowConsumerError';
  }

  /** The oldest event held for the consumer waited longer than `maxLagMs`. */
  static lagging(maxLagMs: number): SlowConsumerError {
    const error = new SlowConsumerError(
      Infinity,
      `Events waited more than ${maxLagMs} ms for a slow consumer; resume from the log`,
    );
    error.maxLagMs = maxLagMs;
    return error;
  }
}

/** The pub/sub backend cannot deliver: unreachable at boot, connection lost, or shut down. */
export class EventsUnavailableError extends EventStreamError {
  readonly code = 'EVENTS_UNAVAILABLE';

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'EventsUnavailableError';
  }
}
