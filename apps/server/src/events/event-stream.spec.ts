import { describe, expect, it } from 'vitest';
import { type BusEvent, EventBus } from './event-bus.js';
import { decodeEvent, encodeEvent, reviveDates } from './event-codec.js';
import { EventsUnavailableError } from './events.errors.js';

/** A bus whose backend confirms or refuses each subscription when the test says so. */
class ControlledBus extends EventBus {
  readonly backend = 'in-process';
  readonly pending: {
    channel: string;
    onEvent: (event: BusEvent) => void;
    confirm: () => void;
    refuse: (error: Error) => void;
  }[] = [];
  readonly unsubscribed: string[] = [];

  publish(): Promise<void> {
    return Promise.resolve();
  }

  protected subscribe(channel: string, onEvent: (event: BusEvent) => void): Promise<() => void> {
    return new Promise((resolve, reject) => {
      this.pending.push({
        channel,
        onEvent,
        confirm: () => {
          resolve(() => this.unsubscribed.push(channel));
        },
        refuse: reject,
      });
    });
  }

  protected shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

describe('EventStream over a slow or failing backend', () => {
  it('is ready only once every channel is confirmed', async () => {
    const bus = new ControlledBus();
    const stream = bus.open(['a', 'b']);
    let ready = false;
    const readiness = stream.ready().then(() => {
      ready = true;
    });
    bus.pending[0]?.confirm();
    await Promise.resolve();
    expect(ready).toBe(false);
    bus.pending[1]?.confirm();
    await readiness;
    expect(ready).toBe(true);
    stream.close();
    expect(bus.unsubscribed.sort()).toEqual(['a', 'b']);
  });

  it('undoes a subscription confirmed after its channel was removed', async () => {
    const bus = new ControlledBus();
    const stream = bus.open(['a']);
    const live = stream.add('a');
    stream.remove('a');
    bus.pending[0]?.confirm();
    await live;
    expect(bus.unsubscribed).toEqual(['a']);
    // A delivery the backend still had in flight is dropped.
    bus.pending[0]?.onEvent({ type: 'late' });
    stream.close();
    expect(await stream.next()).toEqual({ value: undefined, done: true });
  });

  it('ends the stream, and rejects add() and ready(), when a subscription is refused', async () => {
    const bus = new ControlledBus();
    const stream = bus.open(['a']);
    const added = stream.add('b');
    bus.pending[0]?.confirm();
    bus.pending[1]?.refuse(new Error('NOPERM'));

    await expect(added).rejects.toBeInstanceOf(EventsUnavailableError);
    await expect(stream.next()).rejects.toThrow('Could not subscribe to b');
    await expect(stream.ready()).rejects.toBeInstanceOf(EventsUnavailableError);
    expect(bus.unsubscribed).toEqual(['a']);
    expect(bus.openStreams).toBe(0);
  });

  it('refuses an empty channel name', () => {
    const bus = new ControlledBus();
    expect(() => bus.open([''])).toThrow(TypeError);
  });
});

describe('event codec', () => {
  it('revives only ISO instants under keys ending in At', () => {
    const at = '2025-01-02T03:04:05.678Z';
    expect(reviveDates('createdAt', at)).toEqual(new Date(at));
    expect(reviveDates('created', at)).toBe(at);
    expect(reviveDates('createdAt', '2025-01-02')).toBe('2025-01-02');
    expect(reviveDates('createdAt', '2025-13-45T99:99:99.999Z')).toBe('2025-13-45T99:99:99.999Z');
    expect(reviveDates('createdAt', 42)).toBe(42);
  });

  it('revives nested dates and round-trips everything else as JSON', () => {
    const event = { type: 't', nested: { expiresAt: new Date(0) }, list: [1, 'x'], none: null };
    expect(decodeEvent(encodeEvent(event))).toEqual(event);
  });

  it('refuses what is not an event', () => {
    expect(() => encodeEvent([{ type: 't' }])).toThrow(TypeError);
    expect(() => encodeEvent({ type: 1 })).toThrow(TypeError);
    expect(() => decodeEvent('"text"')).toThrow(TypeError);
  });
});
