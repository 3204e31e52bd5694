/**
 * (e) Scaling out: many small groups (200 of 10 devices), one Parley instance against two
 * instances sharing Redis, each instance in a process of its own (instance.ts), closed-loop
 * throughput. With two, subscribers and senders alternate between the instances, so every event
 * crosses Redis to reach half of its group.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { b64, BenchDevice, SEND_MESSAGE } from './client.js';
import { cpuDelta, machineBusyMs, processesCpuMs, waitForQuiet } from './cpu.js';
import { buildGroup, makeUsers, mapLimit } from './group.js';
import type { InstanceMessage, InstanceSettings } from './instance.js';
import { LoadThread } from './load.js';
import { type PreparedMessage, receiptKey, type RunResult, type Target } from './load-protocol.js';
import { type BenchDatabase, databaseCpu } from './server.js';

/** Knobs of the scale-out section. */
export interface ScaleOptions {
  groups: number;
  groupSize: number;
  senders: number;
  socketsPerSender: number;
  /** Messages in flight in the closed loop. */
  window: number;
  seconds: number;
  repeats: number;
  poolSize: number;
  plaintextBytes: number;
  redisUrl: string;
  quietCores: number;
  log: (line: string) => void;
}

/** One closed-loop run against one or two instances. */
export interface ScaleRun {
  instances: number;
  client: RunResult;
  /** Messages delivered to every member per second, and deliveries (receipts) per second. */
  deliveredRate: number;
  deliveriesPerSecond: number;
  /** Cores used over the run by the instances (all their threads), the load thread, Redis, PostgreSQL, the whole machine. */
  serverCores: number;
  loadCores: number;
  redisCores: number;
  databaseCores: number;
  machineCores: number;
  /** Instances' CPU per accepted message (ms). */
  serverCpuPerMessage: number;
  /**
   * The throughput had the load generator's CPU gone to the system under test at the same
   * msg/s per core: delivered × machine cores busy / (machine cores busy − load cores).
   */
  withoutLoadGenerator: number;
  /** Delivered msg/s per core the instances used: what each core of Parley gets through. */
  perServerCore: number;
  loadAverage: number;
}

/** What the section measured. */
export interface ScaleReport {
  setup: {
    cores: number;
    groups: number;
    groupSize: number;
    subscribers: number;
    messageBytes: number;
    buildMs: number;
  };
  runs: ScaleRun[];
}

interface Instance {
  child: ChildProcess;
  url: string;
  wsUrl: string;
  port: number;
}

async function startInstance(settings: InstanceSettings): Promise<Instance> {
  const child = fork(new URL('./instance.js', import.meta.url), [JSON.stringify(settings)], {
    stdio: 'inherit',
  });
  const ready = await new Promise<Extract<InstanceMessage, { type: 'ready' }>>(
    (resolve, reject) => {
      child.once('exit', (code) => {
        reject(new Error(`a Parley instance exited with ${String(code)} before it was ready`));
      });
      child.on('message', (message: InstanceMessage) => {
        if (message.type === 'ready') resolve(message);
      });
    },
  );
  return { child, url: ready.url, wsUrl: ready.wsUrl, port: Number(new URL(ready.url).port) };
}

async function stopInstance(instance: Instance): Promise<void> {
  if (instance.child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => {
    instance.child.once('exit', () => {
      resolve();
    });
  });
  instance.child.send({ type: 'close' });
  const timeout = setTimeout(() => instance.child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timeout);
}

/** PIDs of the redis-server processes on this machine (the bus's CPU is part of (e)). */
function redisPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).startsWith('redis-server')) {
        pids.push(Number(entry));
      }
    } catch {
      // The process ended meanwhile.
    }
  }
  return pids;
}

export async function scaleout(
  database: BenchDatabase,
  options: ScaleOptions,
): Promise<ScaleReport> {
  const { log } = options;
  const settings: InstanceSettings = {
    databaseUrl: database.url,
    redisUrl: options.redisUrl,
    tokenSecret: randomBytes(32).toString('hex'),
  };
  // One after the other: the first runs the migrations.
  const instances: Instance[] = [];
  const load = new LoadThread();
  try {
    instances.push(await startInstance(settings));
    instances.push(await startInstance(settings));
    const [first, second] = instances as [Instance, Instance];

    const buildStart = performance.now();
    const owner = await BenchDevice.signUp(first.url);
    const creators = [owner];
    for (let i = 1; i < options.groups; i++) creators.push(await owner.another());
    const users = await makeUsers(first.url, options.groups, options.groupSize - 1, 1);
    const built = await mapLimit(creators, 4, (creator, i) =>
      buildGroup(creator, [users[i] ?? []], 1),
    );
    const buildMs = performance.now() - buildStart;
    const subscribers = built.flatMap((group) => group.members);
    log(
      `  ${built.length} groups of ${built[0]?.members.length ?? 0} built in ${(buildMs / 1000).toFixed(1)} s`,
    );

    // Ciphertexts round robin over the groups, each sent by its group's creator.
    const plaintext = randomBytes(options.plaintextBytes);
    const messages: PreparedMessage[] = [];
    let messageBytes = 0;
    for (let k = 0; k < options.poolSize; k++) {
      const group = built[k % built.length];
      if (group === undefined) continue;
      const ciphertext = await group.group.encrypt(plaintext);
      messageBytes = ciphertext.length;
      const base64 = b64(ciphertext);
      messages.push({
        sender: k % options.senders,
        key: receiptKey(base64),
        receipts: group.members.length,
        body: JSON.stringify({
          query: SEND_MESSAGE,
          variables: {
            deviceId: group.creator.deviceId,
            conversationId: group.conversationId,
            message: base64,
          },
        }),
      });
    }
    await load.call({ type: 'messages', pool: 'scale', messages });
    log(`  ${messages.length} PrivateMessages of ${messageBytes} bytes`);

    const subscribe = async (set: string, wsUrls: string[]) => {
      // In chunks: thousands of handshakes at once would measure the connection storm.
      for (let i = 0; i < subscribers.length; i += 100) {
        await load.call({
          type: 'subscribe-parley',
          set,
          wsUrl: first.wsUrl,
          devices: subscribers.slice(i, i + 100).map((device, j) => ({
            token: device.token,
            deviceId: device.deviceId,
            wsUrl: wsUrls[(i + j) % wsUrls.length] ?? first.wsUrl,
          })),
        });
      }
    };
    const target = (ports: number[]): Target => ({
      host: '127.0.0.1',
      port: first.port,
      path: '/graphql',
      tokens: Array.from({ length: options.senders }, () => owner.token),
      socketsPerSender: options.socketsPerSender,
      senderPorts: Array.from(
        { length: options.senders },
        (_, s) => ports[s % ports.length] ?? first.port,
      ),
    });

    const runs: ScaleRun[] = [];
    const measure = async (count: number, ports: number[], record: boolean) => {
      if (options.quietCores > 0) await waitForQuiet(options.quietCores, 180_000);
      const pids = instances.map((instance) => instance.child.pid ?? 0);
      const redis = redisPids();
      const before = {
        servers: processesCpuMs(pids),
        redis: processesCpuMs(redis),
        database: await databaseCpu(database),
        machine: machineBusyMs(),
        at: performance.now(),
      };
      const client = await load.run({
        set: `scale-${count}`,
        target: target(ports),
        pool: 'scale',
        shape: { kind: 'closed', window: options.window, seconds: options.seconds },
      });
      const wall = performance.now() - before.at;
      const servers = cpuDelta(before.servers, processesCpuMs(pids));
      const cores = (ms: number) => ms / wall;
      const machineCores = cores(machineBusyMs() - before.machine);
      const loadCores = cores(client.clientCpuMs);
      const run: ScaleRun = {
        instances: count,
        client,
        deliveredRate: client.deliveredRate,
        deliveriesPerSecond: client.receipts / client.seconds,
        serverCores: cores(servers),
        loadCores,
        redisCores: cores(cpuDelta(before.redis, processesCpuMs(redis))),
        databaseCores: cores(cpuDelta(before.database, await databaseCpu(database))),
        machineCores,
        serverCpuPerMessage: servers / Math.max(1, client.accepted),
        withoutLoadGenerator:
          (client.deliveredRate * machineCores) / Math.max(0.01, machineCores - loadCores),
        perServerCore: client.deliveredRate / Math.max(0.01, cores(servers)),
        loadAverage: os.loadavg()[0] ?? Number.NaN,
      };
      if (!client.complete) log(`  ${count} instance(s) FAILED: ${client.problems.join('; ')}`);
      if (client.drainMs !== 0) {
        log(
          client.drainMs === null
            ? '  its backlog did not drain'
            : `  backlog drained ${(client.drainMs / 1000).toFixed(1)} s after the grace time`,
        );
      }
      log(
        `  ${count} instance(s)${record ? '' : ' (warm-up)'}: ${run.deliveredRate.toFixed(0)} msg/s ` +
          `(${run.deliveriesPerSecond.toFixed(0)} deliveries/s), p50 ${client.latency.p50.toFixed(1)} ` +
          `p99 ${client.latency.p99.toFixed(1)} ms, receipts ${client.receipts}/${client.expectedReceipts}; ` +
          `cores: servers ${run.serverCores.toFixed(2)}, load thread ${loadCores.toFixed(2)}, ` +
          `redis ${run.redisCores.toFixed(2)}, db ${run.databaseCores.toFixed(2)}, machine ${machineCores.toFixed(2)}; ` +
          `without the load generator ${run.withoutLoadGenerator.toFixed(0)} msg/s; load average ${run.loadAverage.toFixed(2)}`,
      );
      if (record) runs.push(run);
    };

    // One instance: everyone on the first. Two: subscribers and senders alternate.
    const phases: { count: number; wsUrls: string[]; ports: number[] }[] = [
      { count: 1, wsUrls: [first.wsUrl], ports: [first.port] },
      { count: 2, wsUrls: [first.wsUrl, second.wsUrl], ports: [first.port, second.port] },
    ];
    for (const phase of phases) {
      const subscribeStart = performance.now();
      await subscribe(`scale-${phase.count}`, phase.wsUrls);
      log(
        `  ${subscribers.length} subscribers live on ${phase.count} instance(s) in ` +
          `${((performance.now() - subscribeStart) / 1000).toFixed(1)} s`,
      );
      await measure(phase.count, phase.ports, false);
      for (let repeat = 0; repeat < options.repeats; repeat++) {
        await measure(phase.count, phase.ports, true);
      }
      await load.call({ type: 'close-set', set: `scale-${phase.count}` });
    }
    return {
      setup: {
        cores: os.availableParallelism(),
        groups: built.length,
        groupSize: built[0]?.members.length ?? 0,
        subscribers: subscribers.length,
        messageBytes,
        buildMs,
      },
      runs,
    };
  } finally {
    await load.close().catch(() => undefined);
    for (const instance of instances) await stopInstance(instance);
  }
}
