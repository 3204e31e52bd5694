import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { EventStream } from '../apps/server/src/events/event-stream.js';
import { SharedExecution } from '../apps/server/src/live/shared-execution.js';
import {
  buildGroup,
  EVENTS_SUBSCRIPTION,
  type GroupMember as Member,
  ParleyDevice,
} from './support/parley-client.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

/** One graphql-transport-ws message as it came over the wire. */
interface Frame {
  raw: string;
  id?: string;
  type: string;
  payload?: unknown;
}

/**
 * A subscriber speaking graphql-transport-ws by hand, keeping every frame's exact text: what
 * the server writes for the `events` subscription must be what graphql-ws would write.
 */
class RawSubscriber {
  readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data: Buffer) => {
      const raw = data.toString('utf8');
      this.frames.push({ raw, ...(JSON.parse(raw) as Omit<Frame, 'raw'>) });
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  static async open(app: TestApp, device: ParleyDevice, id: string): Promise<RawSubscriber> {
    const socket = new WebSocket(app.url.replace(/^http/, 'ws'), 'graphql-transport-ws');
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    const subscriber = new RawSubscriber(socket);
    socket.send(
      JSON.stringify({
        type: 'connection_init',
        payload: { authorization: `Bearer ${device.token}` },
      }),
    );
    await subscriber.waitFor((frame) => frame.type === 'connection_ack');
    socket.send(
      JSON.stringify({
        id,
        type: 'subscribe',
        payload: { query: EVENTS_SUBSCRIPTION, variables: { deviceId: device.deviceId } },
      }),
    );
    await subscriber.waitFor((frame) => typename(frame) === 'SubscribedEvent');
    return subscriber;
  }

  /** The `next` frames carrying log entries, in the order they came. */
  entries(): Frame[] {
    return this.frames.filter((frame) => typename(frame) === 'LogEntryEvent');
  }

  async waitFor(match: (frame: Frame) => boolean, ms = 20_000): Promise<Frame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.frames.find(match);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching frame within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Stops reading from the TCP socket: the server's writes back up, as for a stalled client. */
  stall(): void {
    (this.socket as unknown as { _socket: Socket })._socket.pause();
  }

  resume(): void {
    (this.socket as unknown as { _socket: Socket })._socket.resume();
  }

  close(): void {
    this.socket.terminate();
  }
}

function typename(frame: Frame): string | undefined {
  if (frame.type !== 'next') return undefined;
  const payload = frame.payload as { data?: { events?: { __typename?: string } } } | undefined;
  return payload?.data?.events?.__typename;
}

function seqOf(frame: Frame): number {
  return (frame.payload as { data: { events: { entry: { seq: number } } } }).data.events.entry.seq;
}

/** The server's PARLEY_LIVE_MAX_LAG_MS in this suite. */
const LAG_MS = 1500;

describeE2E('fan-out of live events', () => {
  let app: TestApp;
  beforeAll(async () => {
    // A short lag limit, so that a stalled subscriber is cut within the test (long enough that a
    // reading one on a busy machine is not).
    app = await startTestApp({ liveMaxLagMs: LAG_MS });
  });
  afterAll(async () => {
    await app.close();
  });

  it('gives each member the same bytes behind its own id, in order, and a non-member nothing', async () => {
    const { conversationId, members } = await buildGroup(app, 3);
    const [alice, bob, carol] = members as [Member, Member, Member];
    const outsider = await ParleyDevice.create(app);
    const bobLive = await RawSubscriber.open(app, bob.device, 'bob-1');
    const carolLive = await RawSubscriber.open(app, carol.device, 'c');
    const outsiderLive = await RawSubscriber.open(app, outsider, 'outsider');
    // The SDK's way as well (graphql-ws's own client), for a third member of the same document.
    const aliceLive = await alice.device.subscribe();

    // Every frame below comes from the shared execution (the server's wiring hands it each
    // subscription's socket), which runs the selection once per event for all three.
    const rendered = vi.spyOn(SharedExecution.prototype, 'messageTail');
    const executed = vi.spyOn(
      SharedExecution.prototype as unknown as { serialise(result: unknown): string },
      'serialise',
    );
    const seqs: number[] = [];
    for (let i = 0; i < 12; i++)
      seqs.push(await alice.device.say(alice.group, conversationId, `m${i}`));
    for (const live of [bobLive, carolLive]) {
      await live.waitFor(
        (frame) => typename(frame) === 'LogEntryEvent' && seqOf(frame) === seqs.at(-1),
      );
      expect(live.entries().map(seqOf)).toEqual(seqs);
    }
    await aliceLive.waitFor((event) => event.entry?.seq === seqs.at(-1));
    expect(aliceLive.errors).toEqual([]);
    const ofThisGroup = (payload: string | Buffer): boolean =>
      payload.includes('"LogEntryEvent"') && payload.includes(conversationId);
    const renders = rendered.mock.results.filter(
      (result) => result.type === 'return' && ofThisGroup(result.value),
    );
    const executions = executed.mock.results.filter(
      (result) => result.type === 'return' && ofThisGroup(result.value),
    );
    expect(renders).toHaveLength(3 * seqs.length);
    expect(executions).toHaveLength(seqs.length);
    rendered.mockRestore();
    executed.mockRestore();

    const bobFrames = bobLive.entries();
    const carolFrames = carolLive.entries();
    for (const [index, frame] of bobFrames.entries()) {
      // Exactly what graphql-ws writes: {"id","type","payload"}, nothing else, in that order.
      expect(frame.raw).toBe(
        JSON.stringify({ id: frame.id, type: frame.type, payload: frame.payload }),
      );
      expect(frame.id).toBe('bob-1');
      const carolFrame = carolFrames[index];
      expect(carolFrame?.id).toBe('c');
      // The payload is the same text for both, only the id differs.
      expect(carolFrame?.raw.slice('{"id":"c"'.length)).toBe(
        frame.raw.slice('{"id":"bob-1"'.length),
      );
    }
    // Bob can read what he received.
    const entry = (bobFrames[0]?.payload as { data: { events: { entry: { message: string } } } })
      .data.events.entry;
    const processed = await bob.group.processMessage(Buffer.from(entry.message, 'base64'));
    expect(processed.kind).toBe('application');

    // The non-member's stream heard nothing of it, though it is live (its own conversation).
    const { conversationId: own, group: ownGroup } = await outsider.createConversation();
    const ownSeq = await outsider.say(ownGroup, own, 'alone');
    await outsiderLive.waitFor((frame) => typename(frame) === 'LogEntryEvent');
    expect(outsiderLive.entries().map(seqOf)).toEqual([ownSeq]);
    expect(outsiderLive.entries().every((frame) => !frame.raw.includes(conversationId))).toBe(true);

    for (const live of [bobLive, carolLive, outsiderLive]) live.close();
    await aliceLive.close();
  });

  it('writes the next entry to caught-up subscribers in the bus delivery itself, in order', async () => {
    const { conversationId, members } = await buildGroup(app, 3);
    const [alice, bob, carol] = members as [Member, Member, Member];
    const bobLive = await RawSubscriber.open(app, bob.device, 'bob');
    const carolLive = await RawSubscriber.open(app, carol.device, 'carol');
    const first = await alice.device.say(alice.group, conversationId, 'warm');
    for (const live of [bobLive, carolLive]) {
      await live.waitFor((frame) => typename(frame) === 'LogEntryEvent' && seqOf(frame) === first);
    }

    // Writes to TCP sockets made while a stream takes a bus event: a caught-up subscriber's
    // frame goes out there and then, not some promise hops later.
    const written = vi.spyOn(Socket.prototype, 'write');
    const stream = EventStream.prototype as unknown as {
      deliver: (this: EventStream, ...args: unknown[]) => void;
    };
    const deliver = stream.deliver;
    let writtenInDelivery = 0;
    stream.deliver = function (this: EventStream, ...args: unknown[]) {
      const before = written.mock.calls.length;
      deliver.apply(this, args);
      writtenInDelivery += written.mock.calls.length - before;
    };
    const seqs: number[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        seqs.push(await alice.device.say(alice.group, conversationId, `m${i}`));
        for (const live of [bobLive, carolLive]) {
          await live.waitFor(
            (frame) => typename(frame) === 'LogEntryEvent' && seqOf(frame) === seqs.at(-1),
          );
        }
      }
    } finally {
      stream.deliver = deliver;
      written.mockRestore();
    }
    // Two subscribers, three entries: at least one write per frame.
    expect(writtenInDelivery).toBeGreaterThanOrEqual(6);
    for (const live of [bobLive, carolLive]) {
      expect(live.entries().map(seqOf)).toEqual([first, ...seqs]);
      live.close();
    }
  });

  it('cuts a stalled subscriber by its lag with SLOW_CONSUMER while the others keep receiving', async () => {
    const { conversationId, members } = await buildGroup(app, 3);
    const [alice, bob, carol] = members as [Member, Member, Member];
    const bobLive = await RawSubscriber.open(app, bob.device, 'bob');
    const carolLive = await RawSubscriber.open(app, carol.device, 'carol');
    carolLive.stall();

    // Large messages, so that Carol's socket backs up past the kernel's buffers and the server's
    // high-water mark: then her events wait on the server, and grow older than the limit.
    const big = randomBytes(96 * 1024).toString('base64');
    const seqs: number[] = [];
    for (let i = 0; i < 60; i++) {
      seqs.push(await alice.device.say(alice.group, conversationId, `${i}:${big}`));
      // Now and then, let the oldest event waiting for Carol age past the limit: the next one
      // that comes for her then cuts her off.
      if (i >= 40 && i % 10 === 0) {
        await new Promise((resolve) => setTimeout(resolve, LAG_MS + 500));
      }
    }

    // Bob, reading, has every one of them, in order.
    await bobLive.waitFor(
      (frame) => typename(frame) === 'LogEntryEvent' && seqOf(frame) === seqs.at(-1),
      60_000,
    );
    expect(bobLive.entries().map(seqOf)).toEqual(seqs);
    expect(bobLive.frames.some((frame) => frame.type === 'error')).toBe(false);

    // Carol reads again: what was written before the cut, in order, then the typed error.
    carolLive.resume();
    const error = await carolLive.waitFor((frame) => frame.type === 'error', 60_000);
    expect(error.id).toBe('carol');
    expect(error.payload).toMatchObject([{ extensions: { code: 'SLOW_CONSUMER' } }]);
    const received = carolLive.entries().map(seqOf);
    expect(received.length).toBeLessThan(seqs.length);
    expect(received).toEqual(seqs.slice(0, received.length));
    // Nothing after the error.
    expect(carolLive.frames.at(-1)).toBe(error);

    // Bob is still live.
    const after = await alice.device.say(alice.group, conversationId, 'still here');
    await bobLive.waitFor((frame) => typename(frame) === 'LogEntryEvent' && seqOf(frame) === after);
    bobLive.close();
    carolLive.close();
    // Some 10 MB through the server on a machine that may be busy: more than the default timeout.
  }, 300_000);
});
