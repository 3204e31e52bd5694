import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { BusMessage } from './event-bus.js';
import type { EventStream } from './event-stream.js';
import { EventsUnavailableError, SlowConsumerError } from './events.errors.js';
import { InProcessEventBus } from './in-process-event-bus.js';

/** The next message, failing the test if the stream is done. */
async function nextMessage(stream: EventStream): Promise<BusMessage> {
  const result = await stream.next();
  if (result.done === true) throw new Error('stream ended unexpectedly');
  return result.value;
}

/** Whatever the stream has buffered right now, without waiting for more. */
async function drain(stream: EventStream): Promise<BusMessage[]> {
  const messages: BusMessage[] = [];
  for (;;) {
    const pending = stream.next();
    const outcome = await Promise.race([pending, Promise.resolve('empty' as const)]);
    if (outcome === 'empty') {
      // Leave no waiter behind: close() resolves it as done.
      stream.close();
      await pending;
      return messages;
    }
    if (outcome.done === true) return messages;
    messages.push(outcome.value);
  }
}

describe('InProcessEventBus', () => {
  let bus: InProcessEventBus;

  beforeEach(() => {
    bus = new InProcessEventBus();
  });

  afterEach(async () => {
    await bus.close();
  });

  it('delivers a published event with its channel, reviving Dates under …At keys only', async () => {
    const stream = bus.open(['conversation:1']);
    await stream.ready();
    const createdAt = new Date('2025-01-02T03:04:05.678Z');
    const event = { type: 'message', seq: '7', createdAt, sentOn: createdAt, data: 'AAE=' };
    await bus.publish('conversation:1', event);

    const message = await nextMessage(stream);
    expect(message.channel).toBe('conversation:1');
    expect(message.event).toEqual({ ...event, sentOn: '2025-01-02T03:04:05.678Z' });
    expect(message.event.createdAt).toBeInstanceOf(Date);
    // A copy, like over Redis: the publisher's object is not shared with consumers.
    expect(message.event).not.toBe(event);
    stream.close();
  });

  it('resolves a pending next() when an event arrives', async () => {
    const stream = bus.open(['c']);
    const pending = stream.next();
    await bus.publish('c', { type: 'ping' });
    expect(await pending).toEqual({
      value: { channel: 'c', event: { type: 'ping' } },
      done: false,
    });
    stream.close();
  });

  it('keeps publish order per channel', async () => {
    const stream = bus.open(['a', 'b']);
    for (let i = 0; i < 200; i++) {
      await bus.publish(i % 3 === 0 ? 'b' : 'a', { type: 'n', n: i });
    }
    const received = await drain(stream);
    expect(received).toHaveLength(200);
    for (const channel of ['a', 'b']) {
      const ns = received.filter((m) => m.channel === channel).map((m) => m.event.n);
      expect(ns).toEqual([...ns].sort((x, y) => Number(x) - Number(y)));
    }
  });

  it('hands over what is held in batches, in order, waits for one when none is, then ends', async () => {
    const stream = bus.open(['a']);
    for (let i = 0; i < 5; i++) await bus.publish('a', { type: 'n', n: i });
    const numbers = (result: IteratorResult<readonly BusMessage[], undefined>) =>
      result.done === true ? 'done' : result.value.map((message) => message.event.n);
    expect(numbers(await stream.nextBatch(3))).toEqual([0, 1, 2]);
    expect(numbers(await stream.nextBatch())).toEqual([3, 4]);
    const waiting = stream.nextBatch();
    await bus.publish('a', { type: 'n', n: 5 });
    expect(numbers(await waiting)).toEqual([5]);
    stream.fail(new EventsUnavailableError('gone'));
    await expect(stream.nextBatch()).rejects.toBeInstanceOf(EventsUnavailableError);
    expect(numbers(await stream.nextBatch())).toBe('done');
  });

  it('hands events to takeDirectly only while the consumer waits, and what it declines to next()', async () => {
    const stream = bus.open(['a']);
    const taken: unknown[] = [];
    stream.takeDirectly((event, channel) => {
      if (event.n === 2) return false;
      taken.push(`${channel}:${String(event.n)}`);
      return true;
    });
    // Nobody waits yet: held, as before.
    await bus.publish('a', { type: 'n', n: 0 });
    expect(taken).toEqual([]);
    expect((await nextMessage(stream)).event.n).toBe(0);
    // The consumer waits: taken in the publisher's call, and the wait goes on.
    const waiting = stream.next();
    await bus.publish('a', { type: 'n', n: 1 });
    expect(taken).toEqual(['a:1']);
    // Declined: it ends the wait. The next one finds nobody waiting, so it is held behind it.
    await bus.publish('a', { type: 'n', n: 2 });
    await bus.publish('a', { type: 'n', n: 3 });
    expect(taken).toEqual(['a:1']);
    expect((await waiting).value?.event.n).toBe(2);
    expect((await nextMessage(stream)).event.n).toBe(3);
    // Once ended, nothing more is taken.
    const last = stream.next();
    stream.close();
    await bus.publish('a', { type: 'n', n: 4 });
    expect(taken).toEqual(['a:1']);
    expect(await last).toEqual({ value: undefined, done: true });
  });

  it('adds and removes channels while open, dropping what was buffered for a removed one', async () => {
    const stream = bus.open(['a']);
    await bus.publish('a', { type: 'a1' });
    await stream.add('b');
    await bus.publish('b', { type: 'b1' });
    await bus.publish('a', { type: 'a2' });

    stream.remove('a');
    await bus.publish('a', { type: 'a3' });
    await bus.publish('b', { type: 'b2' });

    expect(stream.channels).toEqual(['b']);
    expect(bus.listenerCount('a')).toBe(0);
    expect((await drain(stream)).map((m) => m.event.type)).toEqual(['b1', 'b2']);
  });

  it('treats add and remove as idempotent, and delivers again after a re-add', async () => {
    const stream = bus.open(['a', 'a']);
    await stream.add('a');
    expect(bus.listenerCount('a')).toBe(1);
    stream.remove('a');
    stream.remove('a');
    stream.remove('never-added');
    expect(bus.listenerCount('a')).toBe(0);

    await bus.publish('a', { type: 'while-removed' });
    await stream.add('a');
    await bus.publish('a', { type: 'after-re-add' });
    expect((await drain(stream)).map((m) => m.event.type)).toEqual(['after-re-add']);
  });

  it('gives every stream on a channel every event', async () => {
    const first = bus.open(['shared']);
    const second = bus.open(['shared', 'other']);
    for (let i = 0; i < 5; i++) await bus.publish('shared', { type: 'n', n: i });

    const expected = [0, 1, 2, 3, 4];
    expect((await drain(first)).map((m) => m.event.n)).toEqual(expected);
    expect((await drain(second)).map((m) => m.event.n)).toEqual(expected);
  });

  it('ends a slow consumer with SlowConsumerError instead of buffering without bound', async () => {
    const stream = bus.open(['a'], { maxBuffered: 3 });
    for (let i = 0; i < 3; i++) await bus.publish('a', { type: 'n', n: i });
    expect(stream.closed).toBe(false);

    await bus.publish('a', { type: 'n', n: 3 });
    expect(stream.closed).toBe(true);
    expect(bus.listenerCount()).toBe(0);
    expect(bus.openStreams).toBe(0);

    const error: unknown = await stream.next().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SlowConsumerError);
    expect(error).toMatchObject({ code: 'SLOW_CONSUMER', maxBuffered: 3 });
    // The error is reported once; afterwards the stream is simply done.
    expect(await stream.next()).toEqual({ value: undefined, done: true });
    await expect(stream.ready()).rejects.toBeInstanceOf(SlowConsumerError);
  });

  it('with maxLagMs, cuts a consumer by how old its oldest held event is, not by a count', async () => {
    let now = 1000;
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => now);
    try {
      const keeping = bus.open(['a'], { maxLagMs: 500 });
      const stuck = bus.open(['a'], { maxLagMs: 500 });
      // Far more than the default count, all young: nobody is cut.
      for (let i = 0; i < 3000; i++) await bus.publish('a', { type: 'n', n: i });
      expect(stuck.closed).toBe(false);
      for (let i = 0; i < 3000; i++) expect((await nextMessage(keeping)).event.n).toBe(i);

      now += 501;
      await bus.publish('a', { type: 'n', n: 3000 });
      expect(stuck.closed).toBe(true);
      const error: unknown = await stuck.next().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(SlowConsumerError);
      expect(error).toMatchObject({ code: 'SLOW_CONSUMER', maxLagMs: 500 });
      // The one that kept up held only the newest event, so it is not lagging.
      expect(keeping.closed).toBe(false);
      expect((await nextMessage(keeping)).event.n).toBe(3000);
      keeping.close();
    } finally {
      clock.mockRestore();
    }
  });

  it('rejects the waiting next() when a stream fails', async () => {
    const stream = bus.open(['a']);
    const pending = stream.next();
    stream.fail(new EventsUnavailableError('gone'));
    await expect(pending).rejects.toBeInstanceOf(EventsUnavailableError);
  });

  it('counts against maxBuffered only what is not yet consumed', async () => {
    const stream = bus.open(['a'], { maxBuffered: 2 });
    for (let i = 0; i < 10; i++) {
      await bus.publish('a', { type: 'n', n: i });
      expect((await nextMessage(stream)).event.n).toBe(i);
    }
    stream.close();
  });

  it('refuses a maxBuffered that is not a positive integer', () => {
    expect(() => bus.open(['a'], { maxBuffered: 0 })).toThrow(RangeError);
    expect(() => bus.open(['a'], { maxBuffered: 1.5 })).toThrow(RangeError);
    expect(() => bus.open(['a'], { maxLagMs: 0 })).toThrow(RangeError);
    expect(bus.openStreams).toBe(0);
  });

  it('unsubscribes everything on close() and on return(), leaving no listener behind', async () => {
    const streams = [bus.open(['a', 'b', 'c']), bus.open(['a']), bus.open(['c', 'd'])];
    expect(bus.listenerCount()).toBe(6);
    expect(bus.openStreams).toBe(3);

    await bus.publish('a', { type: 'buffered' });
    const [first, second, third] = streams;
    first?.close();
    await second?.return();
    expect(bus.listenerCount('a')).toBe(0);
    expect(await first?.next()).toEqual({ value: undefined, done: true });

    // for await … break calls return().
    await bus.publish('c', { type: 'x' });
    if (third !== undefined) {
      for await (const message of third) {
        expect(message.channel).toBe('c');
        break;
      }
    }
    expect(bus.listenerCount()).toBe(0);
    expect(bus.openStreams).toBe(0);
    // Adding to a closed stream does nothing.
    await first?.add('e');
    expect(bus.listenerCount()).toBe(0);
  });

  it('rejects events that are not JSON objects with a string type', async () => {
    const stream = bus.open(['a']);
    const notAnEvent: unknown = { kind: 'message' };
    await expect(bus.publish('a', notAnEvent as { type: string })).rejects.toThrow(TypeError);
    await expect(bus.publish('a', { type: 'big', n: 1n })).rejects.toThrow(TypeError);
    expect(await drain(stream)).toEqual([]);
  });

  it('on close, ends open streams with EventsUnavailableError and refuses new work', async () => {
    const stream = bus.open(['a']);
    await bus.close();
    await expect(stream.next()).rejects.toBeInstanceOf(EventsUnavailableError);
    expect(bus.listenerCount()).toBe(0);

    await expect(bus.publish('a', { type: 'late' })).rejects.toBeInstanceOf(EventsUnavailableError);
    const late = bus.open(['a']);
    await expect(late.next()).rejects.toBeInstanceOf(EventsUnavailableError);
    await bus.close();
  });
});
