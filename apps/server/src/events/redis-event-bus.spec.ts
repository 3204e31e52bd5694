import { createHook } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BusMessage } from './event-bus.js';
import type { EventStream } from './event-stream.js';
import { EventsUnavailableError, SlowConsumerError } from './events.errors.js';
import { RedisEventBus } from './redis-event-bus.js';

const redisUrl = process.env.PARLEY_TEST_REDIS_URL;
if (redisUrl === undefined) {
  console.warn('RedisEventBus specs against Redis skipped: PARLEY_TEST_REDIS_URL is not set');
}

/** A name no parallel run shares. */
const unique = (prefix: string): string => `${prefix}:${randomBytes(6).toString('hex')}`;

/** Collects what the bus reports, and keeps the test output quiet. */
function testLogger(): { warnings: string[]; log: (m: string) => void; warn: (m: string) => void } {
  const warnings: string[] = [];
  return { warnings, log: () => undefined, warn: (message) => warnings.push(message) };
}

async function nextMessage(stream: EventStream, timeoutMs = 5000): Promise<BusMessage> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no event within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    const result = await Promise.race([stream.next(), timeout]);
    if (result.done === true) throw new Error('stream ended unexpectedly');
    return result.value;
  } finally {
    clearTimeout(timer);
  }
}

/** Polls until `check` holds (Redis applies UNSUBSCRIBE and reconnections asynchronously). */
async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Records the sockets and timers created while `during` runs and reports those still alive
 * and referenced later: what would keep the test process from exiting.
 */
async function handlesLeftBy(during: () => Promise<void>): Promise<() => string[]> {
  const alive = new Map<number, { type: string; resource: unknown }>();
  let recording = true;
  const hook = createHook({
    init(id, type, _trigger, resource) {
      if (recording && (type === 'TCPWRAP' || type === 'Timeout'))
        alive.set(id, { type, resource });
    },
    destroy(id) {
      alive.delete(id);
    },
  }).enable();
  try {
    await during();
  } finally {
    recording = false;
  }
  return () => {
    const left = [...alive.values()].filter(({ resource }) => {
      const refed = (resource as { hasRef?: () => boolean }).hasRef;
      return typeof refed !== 'function' || refed.call(resource);
    });
    if (left.length === 0) hook.disable();
    return left.map(({ type }) => type);
  };
}

describe('RedisEventBus.connect', () => {
  it('fails fast, naming REDIS_URL without its credentials, when Redis is unreachable', async () => {
    const started = Date.now();
    let failure: unknown;
    const handlesLeft = await handlesLeftBy(async () => {
      failure = await RedisEventBus.connect('redis://parley:hunter2@127.0.0.1:1', {
        connectTimeoutMs: 1000,
      }).catch((error: unknown) => error);
    });

    expect(failure).toBeInstanceOf(EventsUnavailableError);
    const message = (failure as Error).message;
    expect(message).toContain('REDIS_URL');
    expect(message).toContain('ECONNREFUSED');
    expect(message).not.toContain('hunter2');
    expect(Date.now() - started).toBeLessThan(2000);
    // Well under ioredis's 2 s disconnect timer, which must not be left armed.
    await eventually(() => Promise.resolve(handlesLeft().length === 0), 1000);
  });
});

describe.skipIf(redisUrl === undefined)('RedisEventBus against Redis', () => {
  const url = redisUrl ?? '';
  let logger: ReturnType<typeof testLogger>;
  let admin: Redis;
  let busA: RedisEventBus;
  let busB: RedisEventBus;
  let nameA: string;

  /** Subscribers of a channel across all connections (PUBSUB NUMSUB). */
  async function subscribers(channel: string): Promise<number> {
    const reply: unknown[] = await admin.pubsub('NUMSUB', channel);
    return Number(reply[1]);
  }

  beforeEach(async () => {
    logger = testLogger();
    admin = new Redis(url);
    nameA = unique('parley-test-a');
    busA = await RedisEventBus.connect(url, { connectionName: nameA, logger });
    busB = await RedisEventBus.connect(url, { connectionName: unique('parley-test-b'), logger });
  });

  afterEach(async () => {
    await Promise.all([busA.close(), busB.close()]);
    await admin.quit();
  });

  it('sends what a writer enqueues in one go as one Redis message; the other instance streams each event, in order, with Dates', async () => {
    const channel = unique('conversation');
    const stream = busA.open([channel]);
    await stream.ready();
    const raw = new Redis(url);
    const published: string[] = [];
    raw.on('message', (_channel: string, message: string) => published.push(message));
    await raw.subscribe(channel);
    try {
      const createdAt = new Date('2025-06-07T08:09:10.111Z');
      for (let seq = 1; seq <= 50; seq += 1) {
        // An event of the shape the appender publishes (OutgoingEvent only requires a type).
        const event = { type: 'message', seq: String(seq), createdAt };
        busB.enqueue(channel, event);
      }
      for (let seq = 1; seq <= 50; seq += 1) {
        const { event } = await nextMessage(stream);
        expect(event).toEqual({ type: 'message', seq: String(seq), createdAt });
      }
      await busB.flushed();
      await eventually(() => Promise.resolve(published.length > 0));
      expect(published).toHaveLength(1);
    } finally {
      await raw.quit();
    }
  });

  it('delivers what one instance publishes to a stream on another, with Dates as Dates', async () => {
    const channel = unique('conversation');
    const stream = busA.open([channel]);
    await stream.ready();
    const createdAt = new Date('2025-06-07T08:09:10.111Z');
    await busB.publish(channel, {
      type: 'message',
      conversationId: 'c1',
      seq: '42',
      epoch: '3',
      createdAt,
      data: 'AQID',
    });

    const message = await nextMessage(stream);
    expect(message.channel).toBe(channel);
    expect(message.event).toEqual({
      type: 'message',
      conversationId: 'c1',
      seq: '42',
      epoch: '3',
      createdAt,
      data: 'AQID',
    });
    expect(message.event.createdAt).toBeInstanceOf(Date);
    stream.close();
  });

  it('keeps the order of one publisher per channel', async () => {
    const [one, two] = [unique('order'), unique('order')];
    const stream = busA.open([one, two]);
    await stream.ready();
    const count = 300;
    // Not awaited one by one: the commands still leave in call order on one connection.
    await Promise.all(
      Array.from({ length: count }, (_, i) =>
        busB.publish(i % 2 === 0 ? one : two, { type: 'n', n: i }),
      ),
    );

    const received: BusMessage[] = [];
    while (received.length < count) received.push(await nextMessage(stream));
    for (const channel of [one, two]) {
      const ns = received.filter((m) => m.channel === channel).map((m) => Number(m.event.n));
      expect(ns).toHaveLength(count / 2);
      expect(ns).toEqual([...ns].sort((x, y) => x - y));
    }
    stream.close();
  });

  it('stops delivering a removed channel and releases its Redis subscription', async () => {
    const [removed, kept] = [unique('removed'), unique('kept')];
    const stream = busA.open([removed, kept]);
    await stream.ready();
    expect(await subscribers(removed)).toBe(1);

    await busB.publish(removed, { type: 'before' });
    // Give 'before' time to reach the stream's buffer, so that remove() has to drop it.
    await new Promise((resolve) => setTimeout(resolve, 100));
    stream.remove(removed);
    await busB.publish(removed, { type: 'after' });
    await busB.publish(kept, { type: 'sentinel' });

    // Whatever of `removed` was buffered or still in flight is gone; the sentinel comes first.
    expect((await nextMessage(stream)).event.type).toBe('sentinel');
    await eventually(async () => (await subscribers(removed)) === 0);
    stream.close();
  });

  it('shares one Redis subscription per channel within a process, and fans out to every stream', async () => {
    const channel = unique('shared');
    const [a1, a2, b1] = [busA.open([channel]), busA.open([channel]), busB.open([channel])];
    await Promise.all([a1.ready(), a2.ready(), b1.ready()]);
    // One subscription per bus (each is a separate subscriber connection), not per stream.
    expect(await subscribers(channel)).toBe(2);

    await busB.publish(channel, { type: 'n', n: 1 });
    for (const stream of [a1, a2, b1]) {
      expect((await nextMessage(stream)).event).toEqual({ type: 'n', n: 1 });
    }

    a1.close();
    expect(await subscribers(channel)).toBe(2);
    await busA.publish(channel, { type: 'n', n: 2 });
    expect((await nextMessage(a2)).event.n).toBe(2);
    expect((await nextMessage(b1)).event.n).toBe(2);

    a2.close();
    b1.close();
    await eventually(async () => (await subscribers(channel)) === 0);
  });

  it('ends a slow consumer with SlowConsumerError', async () => {
    const channel = unique('slow');
    const stream = busA.open([channel], { maxBuffered: 2 });
    await stream.ready();
    for (let i = 0; i < 3; i++) await busB.publish(channel, { type: 'n', n: i });
    await eventually(() => Promise.resolve(stream.closed));
    await expect(stream.next()).rejects.toBeInstanceOf(SlowConsumerError);
    await eventually(async () => (await subscribers(channel)) === 0);
  });

  it('drops messages on a channel that are not events', async () => {
    const channel = unique('garbage');
    const stream = busA.open([channel]);
    await stream.ready();
    await admin.publish(channel, 'not json');
    await admin.publish(channel, '{"kind":"no type"}');
    await busB.publish(channel, { type: 'fine' });

    expect((await nextMessage(stream)).event).toEqual({ type: 'fine' });
    expect(logger.warnings).toHaveLength(2);
    stream.close();
  });

  it('ends open streams when the subscriber connection drops, then recovers', async () => {
    const channel = unique('drop');
    const stream = busA.open([channel]);
    await stream.ready();

    const clients = (await admin.client('LIST')) as string;
    const line = clients.split('\n').find((entry) => entry.includes(`name=${nameA}:sub`));
    const id = /\bid=(\d+)/.exec(line ?? '')?.[1];
    expect(id).toBeDefined();
    await admin.client('KILL', 'ID', id ?? '');

    await expect(stream.next()).rejects.toBeInstanceOf(EventsUnavailableError);
    expect(busA.openStreams).toBe(0);

    // Once reconnected, new streams work again.
    let again: EventStream | undefined;
    await eventually(async () => {
      again = busA.open([channel]);
      try {
        await again.ready();
        return true;
      } catch {
        return false;
      }
    });
    await busB.publish(channel, { type: 'after-reconnect' });
    expect((await nextMessage(again as EventStream)).event.type).toBe('after-reconnect');
    again?.close();
    expect(logger.warnings.some((w) => w.includes('Lost the Redis subscriber connection'))).toBe(
      true,
    );
  });

  it('ends streams on close() and leaves no socket or timer behind', async () => {
    const channel = unique('handles');
    let stream: EventStream | undefined;
    let publisher: RedisEventBus | undefined;
    const handlesLeft = await handlesLeftBy(async () => {
      const [one, two] = [
        await RedisEventBus.connect(url, { logger }),
        await RedisEventBus.connect(url, { logger }),
      ];
      publisher = two;
      stream = one.open([channel]);
      await stream.ready();
      await two.publish(channel, { type: 'x' });
      await nextMessage(stream);
      await Promise.all([one.close(), two.close(), one.close()]);
    });

    await expect(stream?.next()).rejects.toBeInstanceOf(EventsUnavailableError);
    await expect(publisher?.publish(channel, { type: 'late' })).rejects.toBeInstanceOf(
      EventsUnavailableError,
    );
    await eventually(() => Promise.resolve(handlesLeft().length === 0), 1000);
  });
});
