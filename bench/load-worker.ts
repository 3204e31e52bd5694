/**
 * The load thread: every client of a run (senders over HTTP, subscribers over graphql-ws or
 * plain WebSocket) lives here, in the server's process but on its own thread and event loop,
 * so that its cost is measured apart from the server's (thread CPU and event-loop use).
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';
import WebSocket from 'ws';
import { EVENTS_SUBSCRIPTION } from './client.js';
import { threadCpuMs } from './cpu.js';
import {
  type LoadRequest,
  type LoadResponse,
  type LoadShape,
  RECEIPT_KEY_CHARS,
  type RunResult,
  receiptKey,
  type Target,
} from './load-protocol.js';
import { summarize } from './stats.js';

if (parentPort === null) throw new Error('load-worker runs as a worker thread');
const port = parentPort;

interface Slot {
  sentAt: number;
  received: number;
  expected: number;
}

/** Matches receipts to sent messages and records send-to-receipt latencies. */
class Recorder {
  private readonly slots = new Map<string, Slot>();
  readonly latencies: Float64Array;
  receipts = 0;
  stray = 0;
  completed = 0;
  lastReceipt = 0;
  onComplete: () => void = () => undefined;

  constructor(capacity: number) {
    this.latencies = new Float64Array(capacity);
  }

  expect(key: string, sentAt: number, expected: number): void {
    this.slots.set(key, { sentAt, received: 0, expected });
  }

  /** A message the server refused: no receipts will come. */
  forget(key: string): void {
    this.slots.delete(key);
  }

  receive(key: string): void {
    const slot = this.slots.get(key);
    if (slot === undefined) {
      this.stray += 1;
      return;
    }
    const now = performance.now();
    if (this.receipts < this.latencies.length) this.latencies[this.receipts] = now - slot.sentAt;
    this.receipts += 1;
    this.lastReceipt = now;
    slot.received += 1;
    if (slot.received === slot.expected) {
      this.slots.delete(key);
      this.completed += 1;
      this.onComplete();
    }
  }

  get outstanding(): number {
    return this.slots.size;
  }
}

let recorder: Recorder | null = null;
let subscriptionErrors = 0;
const receive = (key: string) => {
  // Outside a run nothing is expected; every run waits for its last receipt before it ends.
  recorder?.receive(key);
};

/** Subscriber sockets by set name. */
const sets = new Map<string, WebSocket[]>();
function socketsOf(set: string): WebSocket[] {
  let sockets = sets.get(set);
  if (sockets === undefined) {
    sockets = [];
    sets.set(set, sockets);
  }
  return sockets;
}
let framesChecked = 0;

const MESSAGE_FIELD = Buffer.from('"message":"');
const QUOTE = 0x22;

/**
 * The receipt key of a frame without parsing it: the characters before the closing quote of
 * its `"message":"…"` field (the last field of an entry). Every 64th frame is also parsed in
 * full and checked, so that the shortcut cannot hide a malformed frame.
 */
function frameKey(frame: Buffer): string | null {
  const at = frame.indexOf(MESSAGE_FIELD);
  if (at < 0) return null;
  const end = frame.indexOf(QUOTE, at + MESSAGE_FIELD.length);
  if (end < 0) return null;
  const key = frame.toString('latin1', end - RECEIPT_KEY_CHARS, end);
  if (framesChecked++ % 64 === 0) {
    const parsed = JSON.parse(frame.toString('utf8')) as {
      type?: string;
      message?: string;
      payload?: { data?: { events?: { entry?: { message?: string } } } };
    };
    const message = parsed.message ?? parsed.payload?.data?.events?.entry?.message;
    if (message === undefined || receiptKey(message) !== key) {
      throw new Error(`unexpected frame: ${frame.toString('utf8', 0, 300)}`);
    }
  }
  return key;
}

function asBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}

/**
 * Opens one graphql-ws subscription per device, speaking the graphql-transport-ws protocol
 * directly over `ws` (a full client library would parse every frame as JSON, which here would
 * cost more than the server's own work); resolves once each subscription is live.
 */
async function subscribeParley(
  set: string,
  wsUrl: string,
  devices: { token: string; deviceId: string; wsUrl?: string }[],
): Promise<void> {
  await Promise.all(
    devices.map(
      (device) =>
        new Promise<void>((resolve, reject) => {
          const socket = new WebSocket(device.wsUrl ?? wsUrl, 'graphql-transport-ws', {
            perMessageDeflate: false,
          });
          socketsOf(set).push(socket);
          let live = false;
          socket.on('error', reject);
          socket.on('open', () => {
            socket.send(
              JSON.stringify({
                type: 'connection_init',
                payload: { authorization: `Bearer ${device.token}` },
              }),
            );
          });
          socket.on('message', (data: WebSocket.RawData) => {
            const frame = asBuffer(data);
            if (live) {
              const key = frameKey(frame);
              if (key !== null) receive(key);
              else if (frame.includes('"errors"') || !frame.includes('"type":"next"')) {
                subscriptionErrors += 1;
              }
              return;
            }
            const text = frame.toString('utf8');
            const message = JSON.parse(text) as { type: string };
            if (message.type === 'connection_ack') {
              socket.send(
                JSON.stringify({
                  // Unique like the SDK's (graphql-ws generates a UUID per subscription), so that
                  // the server cannot profit from every subscriber sharing one id.
                  id: randomUUID(),
                  type: 'subscribe',
                  payload: { query: EVENTS_SUBSCRIPTION, variables: { deviceId: device.deviceId } },
                }),
              );
            } else if (message.type === 'next' && text.includes('SubscribedEvent')) {
              live = true;
              resolve();
            } else {
              reject(new Error(`subscription refused: ${text.slice(0, 300)}`));
            }
          });
          socket.on('close', () => {
            if (live) subscriptionErrors += 1;
          });
        }),
    ),
  );
}

/** Opens `count` plain WebSockets to the baseline; resolves once each has been greeted. */
async function subscribeBaseline(set: string, wsUrl: string, count: number): Promise<void> {
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve, reject) => {
          const socket = new WebSocket(wsUrl, { perMessageDeflate: false });
          socketsOf(set).push(socket);
          let live = false;
          socket.on('error', reject);
          socket.on('message', (data: WebSocket.RawData) => {
            const frame = asBuffer(data);
            if (live) {
              const key = frameKey(frame);
              if (key !== null) receive(key);
              return;
            }
            if (frame.toString('utf8').includes('"ready"')) {
              live = true;
              resolve();
            }
          });
        }),
    ),
  );
}

interface PostOutcome {
  ok: boolean;
  error?: string;
}

function post(agent: http.Agent, target: Target, sender: number, body: Buffer) {
  return new Promise<PostOutcome>((resolve) => {
    const token = target.tokens[sender] ?? null;
    const request = http.request(
      {
        host: target.host,
        port: target.senderPorts?.[sender] ?? target.port,
        path: target.path,
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': body.length,
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (response.statusCode !== 200) {
            resolve({ ok: false, error: `HTTP ${response.statusCode}: ${text.slice(0, 200)}` });
            return;
          }
          const parsed = JSON.parse(text) as { errors?: unknown };
          if (parsed.errors !== undefined) {
            resolve({ ok: false, error: JSON.stringify(parsed.errors).slice(0, 300) });
          } else resolve({ ok: true });
        });
      },
    );
    request.on('error', (error) => {
      resolve({ ok: false, error: error.message });
    });
    request.end(body);
  });
}

interface StoredMessage {
  sender: number;
  key: string;
  body: Buffer;
  receipts?: number;
}
const pools = new Map<string, StoredMessage[]>();

let runNumber = 0;
/**
 * The pool's messages as this run sends them: Parley makes sends idempotent (bytes already in
 * the log are acknowledged and not stored or delivered again), so a ciphertext sent in an
 * earlier run would cost it nothing and reach no one. Each run therefore stamps its number into
 * the last bytes of every ciphertext (a whole base64 group inside the AEAD tag, which no one
 * checks: the server cannot decrypt and the subscribers do not), which makes its bytes and its
 * receipt key new while its size and the server's work stay the same.
 */
function stamped(messages: StoredMessage[]): StoredMessage[] {
  runNumber += 1;
  const stamp = Buffer.alloc(3);
  stamp.writeUIntBE(runNumber % 2 ** 24, 0, 3);
  const chars = stamp.toString('base64');
  return messages.map((message) => {
    const text = message.body.toString('latin1');
    const at = text.lastIndexOf(message.key);
    if (at < 0) throw new Error('a message body without its receipt key');
    // Characters 12–15 of the 24-character key: the third-last base64 group, away from the padding.
    const key = `${message.key.slice(0, 12)}${chars}${message.key.slice(16)}`;
    const body = Buffer.from(`${text.slice(0, at)}${key}${text.slice(at + key.length)}`, 'latin1');
    return { ...message, key, body };
  });
}

interface RunOptions {
  graceSeconds: number;
  drainSeconds: number;
}

// Not unref'd: should every socket close, a run must still end (FAILED), not leave the thread
// with nothing to do, which would end it silently.
const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, Math.max(0, ms));
  });

async function run(
  target: Target,
  subscribers: number,
  messages: StoredMessage[],
  shape: LoadShape,
  options: RunOptions,
): Promise<RunResult> {
  const agents = target.tokens.map(
    () => new http.Agent({ keepAlive: true, maxSockets: target.socketsPerSender }),
  );
  const intended =
    shape.kind === 'open' ? Math.ceil(shape.rate * shape.seconds) : Number.POSITIVE_INFINITY;
  const capacity = Math.min(messages.length, intended);
  const receiptsOf = (message: StoredMessage) => message.receipts ?? subscribers;
  let receiptCapacity = 0;
  for (let i = 0; i < capacity; i++) receiptCapacity += receiptsOf(messages[i] as StoredMessage);
  const current = new Recorder(receiptCapacity);
  recorder = current;
  const errorsBefore = subscriptionErrors;
  const acks = new Float64Array(capacity);
  let acked = 0;
  let accepted = 0;
  let expectedReceipts = 0;
  let failed = 0;
  let firstError: string | null = null;
  let sent = 0;
  let lastIntended = 0;
  let sending = true;
  // Set from callbacks (an object, so that the checks below are not narrowed away).
  const pool = { ranOut: false };

  const cpuBefore = threadCpuMs();
  const eluBefore = performance.eventLoopUtilization();
  const t0 = performance.now() + 5;
  let settle: () => void = () => undefined;
  const settled = new Promise<void>((resolve) => {
    settle = resolve;
  });
  const done = () => !sending && acked === sent && current.outstanding === 0;
  const checkDone = () => {
    if (done()) settle();
  };

  const fire = (index: number, at: number) => {
    const message = messages[index];
    if (message === undefined) return;
    const agent = agents[message.sender];
    if (agent === undefined) throw new Error(`no sender ${message.sender}`);
    sent += 1;
    lastIntended = at;
    current.expect(message.key, at, receiptsOf(message));
    void post(agent, target, message.sender, message.body).then((outcome) => {
      if (acked < acks.length) acks[acked] = performance.now() - at;
      acked += 1;
      if (outcome.ok) {
        accepted += 1;
        expectedReceipts += receiptsOf(message);
      } else {
        failed += 1;
        firstError ??= outcome.error ?? 'failed';
        current.forget(message.key);
      }
      checkDone();
    });
  };

  if (shape.kind === 'open') {
    current.onComplete = checkDone;
    const interval = 1000 / shape.rate;
    await new Promise<void>((resolve) => {
      const tick = () => {
        const due = Math.min(capacity, Math.floor((performance.now() - t0) / interval) + 1);
        while (sent < due) fire(sent, t0 + sent * interval);
        if (sent < capacity) setTimeout(tick, 1);
        else resolve();
      };
      setTimeout(tick, Math.max(0, t0 - performance.now()));
    });
  } else {
    const deadline = t0 + shape.seconds * 1000;
    let next = 0;
    current.onComplete = () => {
      if (sending && performance.now() < deadline) {
        if (next < messages.length) {
          fire(next, performance.now());
          next += 1;
        } else pool.ranOut = true;
      }
      checkDone();
    };
    await sleep(t0 - performance.now());
    for (; next < Math.min(shape.window, messages.length); next += 1) fire(next, performance.now());
    await sleep(shape.seconds * 1000);
  }
  sending = false;
  checkDone();
  // Everything must arrive within the grace time; a run that needs longer is incomplete.
  await Promise.race([settled, sleep(options.graceSeconds * 1000)]);
  const end = performance.now();
  const elu = performance.eventLoopUtilization(eluBefore);
  const clientCpuMs = threadCpuMs() - cpuBefore;
  const receiptCount = current.receipts;
  const stray = current.stray;
  const completed = current.completed;
  const lastReceipt = current.lastReceipt;
  const settledInTime = done();
  const outstanding = current.outstanding;
  const unanswered = sent - acked;

  // Stragglers of an incomplete run would land in the next run (Parley's backlog leaking into
  // the baseline's figures): keep receiving them here until they are all in.
  let drainMs: number | null = 0;
  if (!settledInTime) {
    const drainStart = performance.now();
    await Promise.race([settled, sleep(options.drainSeconds * 1000)]);
    drainMs = done() ? performance.now() - drainStart : null;
  }
  recorder = null;
  for (const agent of agents) agent.destroy();

  const errors = subscriptionErrors - errorsBefore;
  const problems: string[] = [];
  if (shape.kind === 'open' && sent < intended) {
    problems.push(`sent ${sent} of ${intended} (the message pool is too small)`);
  }
  if (pool.ranOut) problems.push('the message pool ran out before the end of the closed loop');
  if (failed > 0) problems.push(`${failed} sends refused (${String(firstError)})`);
  if (unanswered > 0) problems.push(`${unanswered} sends unanswered after the grace time`);
  if (outstanding > 0) {
    problems.push(
      `${expectedReceipts - receiptCount} of ${expectedReceipts} receipts missing ` +
        `${options.graceSeconds} s after the last send (${outstanding} messages)`,
    );
  }
  if (stray > 0) problems.push(`${stray} receipts of messages of an earlier run`);
  if (errors > 0) problems.push(`${errors} subscriptions failed or closed`);
  if (!settledInTime && drainMs === null) {
    problems.push(`not drained ${options.drainSeconds} s later: later runs may be disturbed`);
  }

  const receipts = current.latencies.subarray(0, Math.min(receiptCount, current.latencies.length));
  const lastAt = lastReceipt > 0 ? lastReceipt : end;
  return {
    complete: problems.length === 0,
    problems,
    drainMs,
    intended: Number.isFinite(intended) ? intended : sent,
    sent,
    accepted,
    failed,
    firstError,
    expectedReceipts,
    receipts: receiptCount,
    stray,
    subscriptionErrors: errors,
    seconds: (lastAt - t0) / 1000,
    offeredRate: sent / ((lastIntended - t0) / 1000 + 1 / Math.max(1, sent / shape.seconds)),
    deliveredRate: completed / ((lastAt - t0) / 1000),
    latency: summarize(Float64Array.from(receipts)),
    ack: summarize(acks.subarray(0, Math.min(acked, acks.length))),
    clientCpuMs,
    clientElu: elu.utilization,
  };
}

async function handle(request: LoadRequest): Promise<LoadResponse> {
  switch (request.type) {
    case 'subscribe-parley':
      await subscribeParley(request.set, request.wsUrl, request.devices);
      return { type: 'ok', id: request.id };
    case 'subscribe-baseline':
      await subscribeBaseline(request.set, request.wsUrl, request.count);
      return { type: 'ok', id: request.id };
    case 'messages':
      pools.set(
        request.pool,
        request.messages.map((message) => ({ ...message, body: Buffer.from(message.body) })),
      );
      return { type: 'ok', id: request.id };
    case 'run': {
      const subscribers = socketsOf(request.set).length;
      const messages = pools.get(request.pool);
      if (messages === undefined) throw new Error(`no message pool ${request.pool}`);
      const result = await run(request.target, subscribers, stamped(messages), request.shape, {
        graceSeconds: request.graceSeconds,
        drainSeconds: request.drainSeconds,
      });
      return { type: 'result', id: request.id, result };
    }
    case 'close-set':
      await closeSockets(sets.get(request.set) ?? []);
      sets.delete(request.set);
      return { type: 'ok', id: request.id };
    case 'close':
      await closeSockets([...sets.values()].flat());
      return { type: 'ok', id: request.id };
  }
}

/** Closes sockets and waits until each is closed. */
async function closeSockets(sockets: WebSocket[]): Promise<void> {
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          if (socket.readyState === WebSocket.CLOSED) {
            resolve();
            return;
          }
          socket.once('close', () => {
            resolve();
          });
          socket.close();
        }),
    ),
  );
}

port.on('message', (request: LoadRequest) => {
  handle(request).then(
    (response) => {
      port.postMessage(response);
    },
    (error: unknown) => {
      port.postMessage({
        type: 'error',
        id: request.id,
        message: error instanceof Error ? (error.stack ?? error.message) : String(error),
      } satisfies LoadResponse);
    },
  );
});
