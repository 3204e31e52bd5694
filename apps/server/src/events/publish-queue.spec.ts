import { describe, expect, it } from 'vitest';
import type { BusEvent, OutgoingEvent } from './event-bus.js';
import { EventsUnavailableError } from './events.errors.js';
import { EVENT_BATCH_TYPE, PublishQueue, unbatched } from './publish-queue.js';

interface Sent {
  channel: string;
  n: number;
}

/** A port whose sends the test settles (or leaves hanging), recording what went out and what was lost. */
function port() {
  const sent: Sent[] = [];
  const lost: { channel: string; error: Error }[] = [];
  const hanging: { channel: string; n: number; release: () => void }[] = [];
  const state = { available: true, hang: false };
  /** Bus messages sent, each with the events it carried. */
  const messages: { channel: string; ns: number[] }[] = [];
  return {
    sent,
    lost,
    hanging,
    state,
    messages,
    port: {
      send(channel: string, message: OutgoingEvent): Promise<void> {
        const ns: number[] = [];
        // As a subscriber gets it: one event, or a batch's events one by one.
        unbatched((event) => ns.push(event.n as number))(message as unknown as BusEvent);
        messages.push({ channel, ns });
        const n = ns[0] ?? -1;
        if (!state.hang) {
          for (const each of ns) sent.push({ channel, n: each });
          return Promise.resolve();
        }
        return new Promise<void>((resolve) => {
          hanging.push({
            channel,
            n,
            release: () => {
              for (const each of ns) sent.push({ channel, n: each });
              resolve();
            },
          });
        });
      },
      available: () => state.available,
      lost: (channel: string, error: Error) => {
        lost.push({ channel, error });
      },
    },
  };
}

const event = (n: number) => ({ type: 'test', n });

describe('PublishQueue', () => {
  it('returns at once and sends each channel’s events in order', async () => {
    const p = port();
    const queue = new PublishQueue(p.port);
    for (let n = 0; n < 50; n += 1)
      expect(queue.enqueue(n % 2 === 0 ? 'a' : 'b', event(n))).toBe(true);
    await queue.idle();
    const of = (channel: string) => p.sent.filter((s) => s.channel === channel).map((s) => s.n);
    expect(of('a')).toEqual(Array.from({ length: 25 }, (_, i) => i * 2));
    expect(of('b')).toEqual(Array.from({ length: 25 }, (_, i) => i * 2 + 1));
    expect(p.lost).toEqual([]);
    expect(queue.stats).toEqual({ queued: 0, lost: 0 });
    // Enqueued in one go: one bus message per channel.
    expect(p.messages.map((m) => m.channel)).toEqual(['a', 'b']);
  });

  it('sends what waits for a channel as one message, in order, and single events as themselves', async () => {
    const p = port();
    const queue = new PublishQueue(p.port);
    p.state.hang = true;
    queue.enqueue('a', event(0));
    await Promise.resolve();
    // While the first message is out, the next 300 wait; they leave as 256 + 44.
    for (let n = 1; n <= 300; n += 1) queue.enqueue('a', event(n));
    p.state.hang = false;
    p.hanging[0]?.release();
    await queue.idle();
    expect(p.messages.map((m) => m.ns.length)).toEqual([1, 256, 44]);
    expect(p.sent.map((s) => s.n)).toEqual(Array.from({ length: 301 }, (_, n) => n));
    expect(queue.stats).toEqual({ queued: 0, lost: 0 });
  });

  it('hands a batch’s events to listeners one by one and drops what is not an event', () => {
    const got: unknown[] = [];
    const listener = unbatched((event) => got.push(event.n));
    listener({ type: 'test', n: 1 });
    listener({
      type: EVENT_BATCH_TYPE,
      events: [event(2), 'junk', { type: EVENT_BATCH_TYPE, events: [event(9)] }, event(3)],
    });
    listener({ type: EVENT_BATCH_TYPE, events: 'junk' });
    expect(got).toEqual([1, 2, 3]);
  });

  it('gives up on a publish after the timeout and goes on with the next of its channel', async () => {
    const p = port();
    const queue = new PublishQueue(p.port, { timeoutMs: 50 });
    p.state.hang = true;
    queue.enqueue('a', event(1));
    await Promise.resolve();
    queue.enqueue('a', event(2));
    queue.enqueue('a', event(3));
    const started = performance.now();
    await queue.idle();
    // Two timeouts one after the other, and no more: nothing waits on the hung backend.
    expect(performance.now() - started).toBeLessThan(1000);
    // Every event of a message given up on counts as lost.
    expect(p.lost.map((l) => l.error)).toEqual([
      expect.any(EventsUnavailableError),
      expect.any(EventsUnavailableError),
      expect.any(EventsUnavailableError),
    ]);
    // The hung sends were handed over in order all the same (Redis answers them in order later).
    expect(p.hanging.map((h) => h.n)).toEqual([1, 2]);
    for (const h of p.hanging) h.release();
  });

  it('drops at once while the bus is down, and when full, telling the port each time', async () => {
    const p = port();
    const queue = new PublishQueue(p.port, { maxQueued: 3, timeoutMs: 10_000 });
    p.state.available = false;
    expect(queue.enqueue('a', event(1))).toBe(false);
    expect(p.lost).toHaveLength(1);
    p.state.available = true;
    p.state.hang = true;
    expect(queue.enqueue('b', event(1))).toBe(true);
    await Promise.resolve();
    expect([2, 3, 4].map((n) => queue.enqueue('b', event(n)))).toEqual([true, true, false]);
    expect(queue.stats).toEqual({ queued: 3, lost: 2 });
    // Once the bus is known down, what still waits is dropped instead of waiting its turn.
    p.state.available = false;
    p.hanging[0]?.release();
    await queue.idle();
    expect(p.sent.map((s) => s.n)).toEqual([1]);
    expect(queue.stats).toEqual({ queued: 0, lost: 4 });
  });

  it('refuses nonsensical bounds', () => {
    expect(() => new PublishQueue(port().port, { maxQueued: 0 })).toThrow(RangeError);
    expect(() => new PublishQueue(port().port, { timeoutMs: 0 })).toThrow(RangeError);
  });
});
