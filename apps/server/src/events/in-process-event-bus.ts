import { type BusEvent, EventBus, type OutgoingEvent } from './event-bus.js';
import { decodeEvent, encodeEvent } from './event-codec.js';
import { EventsUnavailableError } from './events.errors.js';

type Listener = (event: BusEvent) => void;

/**
 * The bus for a single server process: a map of listeners per channel. With two or more
 * instances, set REDIS_URL instead, or devices connected elsewhere miss events.
 */
export class InProcessEventBus extends EventBus {
  readonly backend = 'in-process';
  private readonly listeners = new Map<string, Set<Listener>>();

  /** Delivers synchronously to this process's streams, after a JSON round trip. */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- see EventBus
  publish<E extends OutgoingEvent>(channel: string, event: E): Promise<void> {
    if (this.isClosing) {
      return Promise.reject(new EventsUnavailableError('The event bus is shut down'));
    }
    let decoded: BusEvent;
    try {
      // The same wire form as Redis, so that code tested on one instance behaves the same on
      // many: no shared mutable object with the publisher, Dates only under `…At` keys, and a
      // Uint8Array shows up as the mess it becomes in JSON rather than working by accident.
      decoded = decodeEvent(encodeEvent(event));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new TypeError(String(error)));
    }
    const listeners = this.listeners.get(channel);
    if (listeners === undefined) return Promise.resolve();
    // A copy: a listener may end its stream, and so unsubscribe, while we iterate.
    for (const listener of [...listeners]) listener(decoded);
    return Promise.resolve();
  }

  /** Listeners on one channel, or on all channels; zero once every stream closed. */
  listenerCount(channel?: string): number {
    if (channel !== undefined) return this.listeners.get(channel)?.size ?? 0;
    let count = 0;
    for (const listeners of this.listeners.values()) count += listeners.size;
    return count;
  }

  protected subscribe(channel: string, onEvent: Listener): Promise<() => void> {
    let listeners = this.listeners.get(channel);
    if (listeners === undefined) {
      listeners = new Set();
      this.listeners.set(channel, listeners);
    }
    // Each subscription gets its own function, so that two streams on one channel (or one
    // stream re-adding a channel) never share a Set entry.
    const listener: Listener = (event) => {
      onEvent(event);
    };
    listeners.add(listener);
    const channelListeners = listeners;
    return Promise.resolve(() => {
      channelListeners.delete(listener);
      // Drop empty sets, or the map would keep one key per channel ever followed.
      if (channelListeners.size === 0 && this.listeners.get(channel) === channelListeners) {
        this.listeners.delete(channel);
      }
    });
  }

  protected shutdown(): Promise<void> {
    this.listeners.clear();
    return Promise.resolve();
  }
}
