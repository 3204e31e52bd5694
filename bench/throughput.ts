/**
 * (a) Application messages into one 100-device group with 100 live graphql-ws subscriptions,
 * open loop at fixed offered rates and closed loop at saturation; (b) in the same process and
 * database, the raw baseline of the same pipeline (baseline.ts), under the same load.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { MlsGroup } from '@parley/mls-member';
import { baselineBody, startBaseline } from './baseline.js';
import { b64, type BenchDevice, SEND_MESSAGE } from './client.js';
import {
  cpuDelta,
  otherCores,
  processCpuMs,
  readMachine,
  threadCpuMs,
  waitForQuiet,
} from './cpu.js';
import { buildGroup, makeUsers } from './group.js';
import { LoadThread } from './load.js';
import {
  type LoadShape,
  type PreparedMessage,
  receiptKey,
  type RunResult,
} from './load-protocol.js';
import { type BenchDatabase, databaseCpu, queryCounter, startParley } from './server.js';

/** Knobs of the throughput section. */
export interface ThroughputOptions {
  groupSize: number;
  senders: number;
  socketsPerSender: number;
  rates: number[];
  seconds: number;
  repeats: number;
  closedWindow: number;
  plaintextBytes: number;
  /** Ciphertexts made up front and reused by every run (each at most once per run). */
  poolSize: number;
  /** Wait before each run until other processes use fewer cores than this (0: don't wait). */
  quietCores: number;
  /** A run during which other processes used more than twice quietCores is run again, this often. */
  retries: number;
  pipelines: ('parley' | 'baseline')[];
  /** Parley's bus: Redis at this URL, or in-process (null). */
  redisUrl: string | null;
  log: (line: string) => void;
}

/** One run of one pipeline, as the clients and the server side measured it. */
export interface MeasuredRun {
  pipeline: 'parley' | 'baseline';
  label: string;
  shape: LoadShape;
  client: RunResult;
  /** Process CPU minus the load thread's, per accepted message (ms). */
  serverCpuPerMessage: number;
  /** PostgreSQL backends' CPU per accepted message (ms). */
  databaseCpuPerMessage: number;
  /** Share of the run's wall time the server thread (main) and the load thread were on a CPU. */
  serverThreadShare: number;
  clientThreadShare: number;
  /** Event-loop delay of the server thread: p99 and max (ms). */
  loopDelayP99: number;
  loopDelayMax: number;
  /** Cores other processes of the machine used meanwhile (a shared machine). */
  otherCores: number;
  /** The machine's 1-minute load average at the end of the run. */
  loadAverage: number;
  /** Messages per database transaction (the group commit's batch size). */
  messagesPerTransaction: number;
  queriesPerMessage: number;
  /** Events published on Parley's bus per message (Parley only). */
  eventsPerMessage: number;
}

/** What the section measured, for the report. */
export interface ThroughputReport {
  setup: {
    groupSize: number;
    subscribers: number;
    senders: number;
    messageBytes: number;
    /** Parley's bus: in-process, or Redis (published and received back even on one instance). */
    bus: 'in-process' | 'Redis';
    /** ts-mls encryption per message on the sender, outside the timed windows (ms). */
    encryptMs: number;
    buildMs: number;
  };
  runs: MeasuredRun[];
}

interface Sender {
  device: BenchDevice;
  group: MlsGroup;
}

/** What the timed runs need of the set-up, and nothing more (see {@link prepare}). */
interface Prepared {
  setup: ThroughputReport['setup'];
  /** The senders' bearer tokens, in the order the load thread's messages name them. */
  tokens: string[];
  baseline: Awaited<ReturnType<typeof startBaseline>>;
}

export async function throughput(
  database: BenchDatabase,
  options: ThroughputOptions,
): Promise<ThroughputReport> {
  const { log } = options;
  const parley = await startParley(database.url, { redisUrl: options.redisUrl });
  const load = new LoadThread();
  let closeBaseline: (() => Promise<void>) | undefined;
  try {
    const { setup, tokens, baseline } = await prepare(parley, load, database, options, (close) => {
      closeBaseline = close;
    });
    const targets = {
      parley: {
        host: '127.0.0.1',
        port: Number(new URL(parley.url).port),
        path: '/graphql',
        tokens,
        socketsPerSender: options.socketsPerSender,
      },
      baseline: {
        host: baseline.host,
        port: baseline.port,
        path: baseline.path,
        tokens: tokens.map(() => null),
        socketsPerSender: options.socketsPerSender,
      },
    };

    const runs: MeasuredRun[] = [];
    const measure = async (
      pipeline: 'parley' | 'baseline',
      label: string,
      shape: LoadShape,
      record: boolean,
    ) => {
      if (!options.pipelines.includes(pipeline)) return;
      for (let attempt = 0; ; attempt++) {
        const run = await measureOnce(pipeline, label, shape);
        const disturbed = options.quietCores > 0 && run.otherCores > 2 * options.quietCores;
        if (disturbed && attempt < options.retries) {
          log(`  (other processes used ${run.otherCores.toFixed(2)} cores: run again)`);
          continue;
        }
        if (record) runs.push(run);
        return;
      }
    };
    const measureOnce = async (
      pipeline: 'parley' | 'baseline',
      label: string,
      shape: LoadShape,
    ): Promise<MeasuredRun> => {
      if (options.quietCores > 0) {
        const waited = await waitForQuiet(options.quietCores, 180_000);
        if (waited > 1500) log(`  (waited ${(waited / 1000).toFixed(0)} s for a quiet machine)`);
      }
      const before = {
        process: processCpuMs(),
        thread: threadCpuMs(),
        database: await databaseCpu(database),
        queries: queryCounter.queries,
        transactions: queryCounter.transactions,
        events: parley.events.published,
        machine: readMachine(),
      };
      const delay = monitorEventLoopDelay({ resolution: 10 });
      delay.enable();
      const startedAt = performance.now();
      const startedAtUs = process.hrtime.bigint() / 1000n;
      const client = await load.run({
        set: pipeline,
        target: targets[pipeline],
        pool: pipeline,
        shape,
      });
      const wall = performance.now() - startedAt;
      delay.disable();
      const machine = readMachine();
      const serverThreadMs = threadCpuMs() - before.thread;
      const serverMs = processCpuMs() - before.process - client.clientCpuMs;
      const databaseMs = cpuDelta(before.database, await databaseCpu(database));
      const accepted = Math.max(1, client.accepted);
      const transactions = queryCounter.transactions - before.transactions;
      const run: MeasuredRun = {
        pipeline,
        label,
        shape,
        client,
        serverCpuPerMessage: serverMs / accepted,
        databaseCpuPerMessage: databaseMs / accepted,
        serverThreadShare: serverThreadMs / wall,
        clientThreadShare: client.clientCpuMs / wall,
        loopDelayP99: delay.percentile(99) / 1e6,
        loopDelayMax: delay.max / 1e6,
        otherCores: otherCores(before.machine, machine),
        loadAverage: os.loadavg()[0] ?? Number.NaN,
        messagesPerTransaction: client.accepted / Math.max(1, transactions),
        queriesPerMessage: (queryCounter.queries - before.queries) / accepted,
        eventsPerMessage: (parley.events.published - before.events) / accepted,
      };
      const { latency } = client;
      if (process.env.PARLEY_BENCH_TRACE !== undefined) {
        // Monotonic µs, as in --cpu-prof profiles: to cut a profile to this run.
        log(`  trace ${pipeline} ${label} ${startedAtUs} ${process.hrtime.bigint() / 1000n}`);
      }
      if (!client.complete) {
        log(`  ${pipeline} ${label} FAILED: ${client.problems.join('; ')}`);
      }
      if (client.drainMs !== 0) {
        log(
          client.drainMs === null
            ? `  ${pipeline} ${label}: its backlog did not drain`
            : `  ${pipeline} ${label}: backlog drained ${(client.drainMs / 1000).toFixed(1)} s after the grace time`,
        );
      }
      log(
        `  ${pipeline.padEnd(8)} ${label.padEnd(8)} delivered ${client.deliveredRate.toFixed(0).padStart(5)} msg/s, ` +
          `p50 ${latency.p50.toFixed(1)} p99 ${latency.p99.toFixed(1)} ms, ` +
          `receipts ${client.receipts}/${client.expectedReceipts}, failed ${client.failed}, ` +
          `server ${run.serverCpuPerMessage.toFixed(2)} ms/msg (thread ${run.serverThreadShare.toFixed(2)}, ` +
          `loop delay p99 ${run.loopDelayP99.toFixed(0)} max ${run.loopDelayMax.toFixed(0)} ms), ` +
          `db ${run.databaseCpuPerMessage.toFixed(3)} ms/msg, client thread ${run.clientThreadShare.toFixed(2)}, ` +
          `batch ${run.messagesPerTransaction.toFixed(1)}, other load ${run.otherCores.toFixed(2)} cores, ` +
          `load average ${run.loadAverage.toFixed(2)}` +
          (client.firstError === null ? '' : `; first error: ${client.firstError}`),
      );
      return run;
    };

    const warmup: LoadShape = { kind: 'open', rate: 250, seconds: 2 };
    await measure('parley', 'warm-up', warmup, false);
    await measure('baseline', 'warm-up', warmup, false);
    for (let repeat = 0; repeat < options.repeats; repeat++) {
      for (const rate of options.rates) {
        const shape: LoadShape = { kind: 'open', rate, seconds: options.seconds };
        await measure('parley', `${rate}/s`, shape, true);
        await measure('baseline', `${rate}/s`, shape, true);
      }
      // Closed loop: a fixed number of messages not yet delivered to every subscriber.
      const shape: LoadShape = {
        kind: 'closed',
        window: options.closedWindow,
        seconds: options.seconds,
      };
      await measure('parley', 'max', shape, true);
      await measure('baseline', 'max', shape, true);
    }
    return { setup, runs };
  } finally {
    await load.close().catch(() => undefined);
    await closeBaseline?.();
    await parley.close();
  }
}

/**
 * Builds the group with real MLS, opens both pipelines' subscribers, and hands the load thread
 * every ciphertext it will send. What it made on the way (the MLS members, the ciphertexts, the
 * request bodies: some 50 MB, and the senders' memory of every message they encrypted) is
 * garbage once it returns. Kept, it sat in the old generation of the thread the servers run on,
 * which every major collection during the timed runs then had to mark: a cost of the load
 * generator that a server does not have, and which fell hardest on the pipeline that allocates
 * more.
 */
async function prepare(
  parley: Awaited<ReturnType<typeof startParley>>,
  load: LoadThread,
  database: BenchDatabase,
  options: ThroughputOptions,
  onBaseline: (close: () => Promise<void>) => void,
): Promise<Prepared> {
  const { log } = options;
  const buildStart = performance.now();
  const [creatorUser, ...others] = await makeUsers(parley.url, options.groupSize, 1, 1);
  const creator = creatorUser?.[0];
  if (creator === undefined) throw new Error('no creator');
  const built = await buildGroup(creator, others, others.length);
  const senders: Sender[] = [{ device: creator, group: built.group }];
  for (const devices of others.slice(0, options.senders - 1)) {
    const device = devices[0];
    if (device !== undefined) senders.push({ device, group: await device.joinFromWelcome() });
  }
  const buildMs = performance.now() - buildStart;
  log(
    `  group of ${built.members.length} built in ${(buildMs / 1000).toFixed(1)} s; ${senders.length} senders joined`,
  );

  await load.call({
    type: 'subscribe-parley',
    set: 'parley',
    wsUrl: parley.wsUrl,
    devices: built.members.map((device) => ({ token: device.token, deviceId: device.deviceId })),
  });
  const baseline = await startBaseline(database.url);
  onBaseline(() => baseline.close());
  await load.call({
    type: 'subscribe-baseline',
    set: 'baseline',
    wsUrl: baseline.wsUrl,
    count: built.members.length,
  });
  log(
    `  ${built.members.length} graphql-ws and ${built.members.length} WebSocket subscribers live`,
  );

  // Every ciphertext is made before any timed window, so the clients' MLS cost is not in it.
  const plaintext = randomBytes(options.plaintextBytes);
  const pool: { sender: number; base64: string }[] = [];
  const encryptStart = performance.now();
  for (let i = 0; i < options.poolSize; i++) {
    const sender = i % senders.length;
    const entry = senders[sender];
    if (entry !== undefined)
      pool.push({ sender, base64: b64(await entry.group.encrypt(plaintext)) });
  }
  const encryptMs = (performance.now() - encryptStart) / options.poolSize;
  const messageBytes = Buffer.from(pool[0]?.base64 ?? '', 'base64').length;
  log(`  ${pool.length} PrivateMessages of ${messageBytes} bytes, ${encryptMs.toFixed(2)} ms each`);
  const parleyMessages: PreparedMessage[] = pool.map(({ sender, base64 }) => ({
    sender,
    key: receiptKey(base64),
    body: JSON.stringify({
      query: SEND_MESSAGE,
      variables: {
        deviceId: senders[sender]?.device.deviceId,
        conversationId: built.conversationId,
        message: base64,
      },
    }),
  }));
  const baselineMessages: PreparedMessage[] = pool.map(({ sender, base64 }) => ({
    sender,
    key: receiptKey(base64),
    body: baselineBody(senders[sender]?.device.deviceId ?? '', base64),
  }));
  await load.call({ type: 'messages', pool: 'parley', messages: parleyMessages });
  await load.call({ type: 'messages', pool: 'baseline', messages: baselineMessages });
  return {
    setup: {
      groupSize: built.members.length,
      subscribers: built.members.length,
      senders: senders.length,
      messageBytes,
      bus: options.redisUrl === null ? 'in-process' : 'Redis',
      encryptMs,
      buildMs,
    },
    tokens: senders.map((sender) => sender.device.token),
    baseline,
  };
}
