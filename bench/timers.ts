/**
 * Disappearing messages: how late the sweeper deletes expired messages, and what it costs.
 * Two measurements, each against a baseline run in the same process and database just before:
 * - the stream: messages sent through the API into many conversations with timers of 5–10 s,
 *   against the same stream with the timers off (lateness under load, cost per message);
 * - the sweeper alone: rows expiring at a steady rate written straight into the log, against an
 *   idle window of the same length (the sweeper's own CPU, on the server and in PostgreSQL).
 */
import { ExpirySweeper, type SweepResult } from '../apps/server/src/messages/expiry-sweeper.js';
import { b64, type BenchDevice, SEND_MESSAGE } from './client.js';
import { cpuDelta, processCpuMs } from './cpu.js';
import { makeUsers, mapLimit } from './group.js';
import { type BenchDatabase, databaseCpu, type ParleyServer } from './server.js';
import { quantile } from './stats.js';
import type { MlsGroup } from '@parley/mls-member';

/** What the timers section measured. */
export interface TimerReport {
  stream: TimerRun[];
  sweeper: SweeperRun[];
}

/** One run of the stream: timers on or off. */
export interface TimerRun {
  label: 'timers off' | 'timers 5–10 s';
  /** From the first send to the end of the wait after the last. */
  seconds: number;
  /** Messages per minute the server took, from the first send to the last answer. */
  acceptedPerMinute: number;
  sent: number;
  /** Deleted by the sweeper during the run and the wait after it. */
  deleted: number;
  /** Rows with an expiry still stored once the last one had been due for 2 s (should be 0). */
  leftOver: number;
  latenessMs: { p50: number; p99: number; max: number };
  sweeps: number;
  /** Wall time inside the sweeper's statements, in all. */
  sweepMs: number;
  /** This process's CPU (server and load generator) per message sent. */
  processCpuPerMessage: number;
  /** PostgreSQL's CPU (every backend) per message sent. */
  databaseCpuPerMessage: number;
}

interface Conversation {
  device: BenchDevice;
  group: MlsGroup;
  id: string;
}

const MAX_IN_FLIGHT = 64;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The sweeper's work as it happens: sweeps, time inside its statements, each row's lateness. */
interface Observed {
  sweeps: number;
  ms: number;
  lateness: number[];
}

/** Wraps the sweeper's `sweep` to record what it does; returns the record and the undo. */
function observeSweeper(parley: ParleyServer): { observed: Observed; restore: () => void } {
  const sweeper = parley.app.get(ExpirySweeper);
  const sweep = sweeper.sweep.bind(sweeper);
  const observed: Observed = { sweeps: 0, ms: 0, lateness: [] };
  sweeper.sweep = async (): Promise<SweepResult> => {
    const start = performance.now();
    const result = await sweep();
    observed.sweeps += 1;
    observed.ms += performance.now() - start;
    observed.lateness.push(...result.latenessMs);
    return result;
  };
  return {
    observed,
    restore: () => {
      sweeper.sweep = sweep;
    },
  };
}

function reset(observed: Observed): void {
  observed.sweeps = 0;
  observed.ms = 0;
  observed.lateness = [];
}

function latency(values: number[]): { p50: number; p99: number; max: number } {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return { p50: Number.NaN, p99: Number.NaN, max: Number.NaN };
  return {
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

/** One window of the sweeper alone: idle, or with rows expiring at a steady rate. */
export interface SweeperRun {
  label: string;
  seconds: number;
  expiring: number;
  deleted: number;
  latenessMs: { p50: number; p99: number; max: number };
  sweeps: number;
  sweepMs: number;
  /** This process's CPU over the window (the server alone: nothing else runs here then). */
  processCpuMs: number;
  /** PostgreSQL's backends' CPU over the window. */
  databaseCpuMs: number;
}

/**
 * `perMinute` rows expiring evenly over `seconds`, written straight into the log (1 KiB each,
 * spread over the conversations), then the window until the last is 2 s past due; before it, an
 * idle window as long. The server is told of the earliest expiry as the appender would tell it.
 */
async function sweeperRuns(
  parley: ParleyServer,
  database: BenchDatabase,
  observed: Observed,
  conversationIds: string[],
  options: { perMinute: number; seconds: number; log: (line: string) => void },
): Promise<SweeperRun[]> {
  const runs: SweeperRun[] = [];
  const count = Math.round((options.perMinute * options.seconds) / 60);
  for (const expiring of [0, count]) {
    const label = expiring === 0 ? 'idle' : `${options.perMinute} expiring/min`;
    options.log(`  sweeper alone, ${label}: ${options.seconds} s`);
    reset(observed);
    if (expiring > 0) {
      await database.admin.query(
        `INSERT INTO "log_entries"
           ("conversation_id", "seq", "kind", "epoch", "sender_device_id", "data", "expires_at")
         SELECT ($1::uuid[])[1 + g % cardinality($1::uuid[])], 1000000000 + g, 'APPLICATION', 0,
                'bench', decode(repeat('ab', 1024), 'hex'),
                now() + make_interval(secs => 1 + g * $3::float8 / $2)
           FROM generate_series(1, $2::integer) AS g`,
        [conversationIds, expiring, options.seconds],
      );
      parley.app.get(ExpirySweeper).expect([{ expiresAt: new Date(Date.now() + 1000) }]);
    }
    const cpuBefore = processCpuMs();
    const dbBefore = await databaseCpu(database);
    const started = performance.now();
    await sleep((options.seconds + 3) * 1000);
    runs.push({
      label,
      seconds: (performance.now() - started) / 1000,
      expiring,
      deleted: observed.lateness.length,
      latenessMs: latency(observed.lateness),
      sweeps: observed.sweeps,
      sweepMs: observed.ms,
      processCpuMs: processCpuMs() - cpuBefore,
      databaseCpuMs: cpuDelta(dbBefore, await databaseCpu(database)),
    });
  }
  return runs;
}

/** Sets a conversation's timer as a member does: the change encrypted, the value in the clear. */
async function setTimer({ device, group, id }: Conversation, seconds: number): Promise<void> {
  const message = await group.encrypt(JSON.stringify({ v: 1, type: 'timer', seconds }));
  await device.gql(
    `mutation ($deviceId: ID!, $conversationId: ID!, $message: Bytes!, $seconds: Int!) {
      setMessageTimer(input: { deviceId: $deviceId, conversationId: $conversationId,
                               message: $message, seconds: $seconds }) { seq }
    }`,
    { conversationId: id, message: b64(message), seconds },
  );
}

/**
 * `perMinute` messages a minute for `seconds`, round robin over the conversations, twice: with
 * the timers off (baseline), then with timers of 5–10 s; after the second, waits until every
 * message has been due for 2 s. Lateness is the database's own: `clock_timestamp()` at deletion
 * minus `expires_at`, returned by the sweeper's DELETE.
 */
export async function timers(
  parley: ParleyServer,
  database: BenchDatabase,
  options: {
    conversations: number;
    perMinute: number;
    seconds: number;
    sweeperSeconds: number;
    log: (line: string) => void;
  },
): Promise<TimerReport> {
  const creators = (await makeUsers(parley.url, 10, 1, 0)).map((devices) => {
    const [device] = devices;
    if (device === undefined) throw new Error('a user without a device');
    return device;
  });
  const conversations = await mapLimit(
    Array.from({ length: options.conversations }),
    4,
    async (_, i): Promise<Conversation> => {
      const device = creators[i % creators.length] as BenchDevice;
      const { conversationId, group } = await device.createConversation();
      return { device, group, id: conversationId };
    },
  );

  const { observed, restore } = observeSweeper(parley);
  const runs: TimerRun[] = [];
  for (const label of ['timers off', 'timers 5–10 s'] as const) {
    await mapLimit(conversations, 8, (conversation, i) =>
      setTimer(conversation, label === 'timers off' ? 0 : 5 + (i % 6)),
    );
    reset(observed);
    options.log(`  ${label}: ${options.perMinute} messages/min for ${options.seconds} s`);
    // Encrypted ahead, so that the clock measures the server's work, not ts-mls in this thread.
    const total = Math.round((options.perMinute * options.seconds) / 60);
    const messages = await mapLimit(Array.from({ length: total }), 1, async (_, i) => {
      const conversation = conversations[i % conversations.length] as Conversation;
      return { conversation, body: b64(await conversation.group.encrypt(`message ${i}`)) };
    });
    const cpuBefore = processCpuMs();
    const dbBefore = await databaseCpu(database);
    const started = performance.now();
    const interval = 60_000 / options.perMinute;
    let sent = 0;
    // Open loop at the offered rate, at most this many requests at once (a stalled server then
    // shows as a lower rate and later sends, not as a pile of sockets).
    const inFlight = new Set<Promise<void>>();
    for (const { conversation, body } of messages) {
      const due = started + sent * interval;
      if (due > performance.now()) await sleep(due - performance.now());
      while (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
      sent += 1;
      const sending = conversation.device
        .gql(SEND_MESSAGE, { conversationId: conversation.id, message: body })
        .then(() => undefined);
      inFlight.add(sending);
      void sending.finally(() => inFlight.delete(sending));
    }
    await Promise.all(inFlight);
    const acceptedPerMinute = (sent * 60_000) / (performance.now() - started);
    // Both runs wait as long, so that CPU per message compares like with like: the longest
    // timer, then 2 s in which every message has been due.
    await sleep(10_000 + 2_000);
    const cpu = processCpuMs() - cpuBefore;
    const db = cpuDelta(dbBefore, await databaseCpu(database));
    const { rows } = await database.admin.query<{ n: string }>(
      `SELECT count(*) AS "n" FROM "log_entries" WHERE "expires_at" <= now() - interval '2 seconds'`,
    );
    runs.push({
      label,
      seconds: (performance.now() - started) / 1000,
      acceptedPerMinute,
      sent,
      deleted: observed.lateness.length,
      leftOver: Number(rows[0]?.n ?? 0),
      latenessMs: latency(observed.lateness),
      sweeps: observed.sweeps,
      sweepMs: observed.ms,
      processCpuPerMessage: cpu / sent,
      databaseCpuPerMessage: db / sent,
    });
  }
  const sweeper = await sweeperRuns(
    parley,
    database,
    observed,
    conversations.map((conversation) => conversation.id),
    { ...options, seconds: options.sweeperSeconds },
  );
  restore();
  return { stream: runs, sweeper };
}
