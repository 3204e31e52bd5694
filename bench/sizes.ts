/**
 * (d) Server work and storage per application message in a group of 10 and of 1,000 devices,
 * with the same number of live subscribers and the same offered load, to show that neither
 * grows with the group: rows and bytes written, transactions and queries, server and
 * database CPU, events published.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { b64, type BenchDevice, SEND_MESSAGE } from './client.js';
import { cpuDelta, otherCores, processCpuMs, readMachine, waitForQuiet } from './cpu.js';
import { type AddTiming, buildGroup, makeUsers } from './group.js';
import type { LoadThread } from './load.js';
import { receiptKey } from './load-protocol.js';
import { type BenchDatabase, databaseCpu, queryCounter, type ParleyServer } from './server.js';
import { median } from './stats.js';

/** Knobs of the per-message section. */
export interface SizesOptions {
  sizes: number[];
  devicesPerUser: number;
  /** Users added per commit while building a group (so a commit adds about usersPerCommit × devicesPerUser). */
  usersPerCommit: number;
  subscribers: number;
  /** Messages per run, at `rate` per second; each group is measured `repeats` times, alternately. */
  messages: number;
  rate: number;
  repeats: number;
  plaintextBytes: number;
  quietCores: number;
  log: (line: string) => void;
}

/** Per-table counters of pg_stat_user_tables, and sizes. */
interface TableStats {
  inserted: number;
  updated: number;
  hot: number;
  deleted: number;
  bytes: number;
}

interface Snapshot {
  tables: Map<string, TableStats>;
  walLsn: string;
}

/** What one group size cost per message (medians of its runs). */
export interface SizeReport {
  groupSize: number;
  runs: number;
  buildMs: number;
  adds: AddTiming[];
  latency: { p50: number; p99: number };
  perMessage: {
    /** Rows written (inserted + updated + deleted), per table, and in all. */
    rows: Record<string, number>;
    rowsTotal: number;
    /** Growth of each table with its indexes and TOAST, in bytes, and of all of them. */
    bytes: Record<string, number>;
    bytesTotal: number;
    /** WAL the whole PostgreSQL cluster wrote meanwhile (bytes). */
    walBytes: number;
    transactions: number;
    queries: number;
    serverCpuMs: number;
    databaseCpuMs: number;
    events: number;
  };
  otherCores: number;
  /** The machine's 1-minute load average at the end of the runs (median). */
  loadAverage: number;
  /** Why runs did not complete (each run's problems); a size with any has no figures. */
  problems: string[];
}

async function snapshot(database: BenchDatabase): Promise<Snapshot> {
  const { rows } = await database.admin.query<{
    relname: string;
    n_tup_ins: string;
    n_tup_upd: string;
    n_tup_hot_upd: string;
    n_tup_del: string;
    bytes: string;
  }>(
    `SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del,
            pg_total_relation_size(relid) AS bytes
       FROM pg_stat_user_tables`,
  );
  const wal = await database.admin.query<{ lsn: string }>(`SELECT pg_current_wal_lsn() AS lsn`);
  return {
    tables: new Map(
      rows.map((row) => [
        row.relname,
        {
          inserted: Number(row.n_tup_ins),
          updated: Number(row.n_tup_upd),
          hot: Number(row.n_tup_hot_upd),
          deleted: Number(row.n_tup_del),
          bytes: Number(row.bytes),
        },
      ]),
    ),
    walLsn: wal.rows[0]?.lsn ?? '0/0',
  };
}

/**
 * Statistics once every backend has reported: PostgreSQL 15 flushes a backend's table counters
 * at most once a second while busy and within 10 s once idle, so wait until log_entries shows
 * at least `minLogInserts` and nothing has moved for 11 s.
 */
async function settledSnapshot(database: BenchDatabase, minLogInserts: number): Promise<Snapshot> {
  let last = await snapshot(database);
  let stableSince = performance.now();
  const deadline = performance.now() + 60_000;
  const key = (s: Snapshot) =>
    JSON.stringify([...s.tables].map(([name, t]) => [name, t.inserted, t.updated, t.deleted]));
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const next = await snapshot(database);
    if (key(next) !== key(last)) stableSince = performance.now();
    last = next;
    const logInserts = next.tables.get('log_entries')?.inserted ?? 0;
    if (logInserts >= minLogInserts && performance.now() - stableSince >= 11_000) return next;
    if (performance.now() > deadline) return next;
  }
}

async function walDiff(database: BenchDatabase, from: string, to: string): Promise<number> {
  const { rows } = await database.admin.query<{ bytes: string }>(
    `SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn) AS bytes`,
    [from, to],
  );
  return Number(rows[0]?.bytes ?? 0);
}

export async function sizes(
  parley: ParleyServer,
  database: BenchDatabase,
  load: LoadThread,
  options: SizesOptions,
): Promise<SizeReport[]> {
  const { log } = options;
  const port = Number(new URL(parley.url).port);
  const plaintext = randomBytes(options.plaintextBytes);

  // Build every group first, then measure, so that no group building falls into a measurement.
  const groups: {
    size: number;
    creator: BenchDevice;
    built: Awaited<ReturnType<typeof buildGroup>>;
  }[] = [];
  for (const size of options.sizes) {
    const setupStart = performance.now();
    const creator = (await makeUsers(parley.url, 1, 1, 0))[0]?.[0];
    if (creator === undefined) throw new Error('no creator');
    const users = await makeUsers(
      parley.url,
      Math.ceil((size - 1) / options.devicesPerUser),
      options.devicesPerUser,
      1,
    );
    log(
      `  group of ${size}: ${users.flat().length} devices signed up with key packages in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`,
    );
    const built = await buildGroup(creator, users, options.usersPerCommit);
    log(
      `  group of ${built.members.length}: built in ${(built.buildMs / 1000).toFixed(1)} s by ${built.adds.length} commits ` +
        `(ts-mls ${(built.adds.reduce((sum, add) => sum + add.clientMs, 0) / 1000).toFixed(1)} s, ` +
        `submitCommitBundle ${(built.adds.reduce((sum, add) => sum + add.submitMs, 0) / 1000).toFixed(1)} s)`,
    );
    await load.call({
      type: 'subscribe-parley',
      set: `size-${size}`,
      wsUrl: parley.wsUrl,
      devices: built.members
        .slice(0, options.subscribers)
        .map((device) => ({ token: device.token, deviceId: device.deviceId })),
    });
    const messages = [];
    for (let i = 0; i < options.messages; i++) {
      const base64 = b64(await built.group.encrypt(plaintext));
      messages.push({
        sender: 0,
        key: receiptKey(base64),
        body: JSON.stringify({
          query: SEND_MESSAGE,
          variables: {
            deviceId: creator.deviceId,
            conversationId: built.conversationId,
            message: base64,
          },
        }),
      });
    }
    await load.call({ type: 'messages', pool: `size-${size}`, messages });
    groups.push({ size, creator, built });
  }

  const runs: SizeReport[] = [];
  let before = await settledSnapshot(database, 0);
  let expectedLogInserts = before.tables.get('log_entries')?.inserted ?? 0;
  const plan = Array.from({ length: options.repeats }, () => groups).flat();
  for (const { size, creator, built } of plan) {
    if (options.quietCores > 0) await waitForQuiet(options.quietCores, 180_000);
    const counters = {
      process: processCpuMs(),
      database: await databaseCpu(database),
      queries: queryCounter.queries,
      transactions: queryCounter.transactions,
      events: parley.events.published,
      machine: readMachine(),
    };
    const client = await load.run({
      set: `size-${size}`,
      target: {
        host: '127.0.0.1',
        port,
        path: '/graphql',
        tokens: [creator.token],
        socketsPerSender: 32,
      },
      pool: `size-${size}`,
      shape: { kind: 'open', rate: options.rate, seconds: options.messages / options.rate },
    });
    const machine = readMachine();
    const serverMs = processCpuMs() - counters.process - client.clientCpuMs;
    const databaseMs = cpuDelta(counters.database, await databaseCpu(database));
    const accepted = Math.max(1, client.accepted);
    const perMessage = (value: number) => value / accepted;
    const transactions = queryCounter.transactions - counters.transactions;
    const queries = queryCounter.queries - counters.queries;
    const events = parley.events.published - counters.events;
    expectedLogInserts += client.accepted;
    const after = await settledSnapshot(database, expectedLogInserts);
    const rows: Record<string, number> = {};
    const bytes: Record<string, number> = {};
    for (const [table, stats] of after.tables) {
      const old = before.tables.get(table);
      const written =
        stats.inserted -
        (old?.inserted ?? 0) +
        stats.updated -
        (old?.updated ?? 0) +
        stats.deleted -
        (old?.deleted ?? 0);
      const grown = stats.bytes - (old?.bytes ?? 0);
      if (written !== 0) rows[table] = perMessage(written);
      if (grown !== 0) bytes[table] = perMessage(grown);
    }
    const report: SizeReport = {
      groupSize: built.members.length,
      runs: 1,
      buildMs: built.buildMs,
      adds: built.adds,
      latency: { p50: client.latency.p50, p99: client.latency.p99 },
      perMessage: {
        rows,
        rowsTotal: Object.values(rows).reduce((sum, value) => sum + value, 0),
        bytes,
        bytesTotal: Object.values(bytes).reduce((sum, value) => sum + value, 0),
        walBytes: perMessage(await walDiff(database, before.walLsn, after.walLsn)),
        transactions: perMessage(transactions),
        queries: perMessage(queries),
        serverCpuMs: perMessage(serverMs),
        databaseCpuMs: perMessage(databaseMs),
        events: perMessage(events),
      },
      otherCores: otherCores(counters.machine, machine),
      loadAverage: os.loadavg()[0] ?? Number.NaN,
      problems: client.problems,
    };
    runs.push(report);
    if (!client.complete)
      log(`  group of ${report.groupSize} FAILED: ${client.problems.join('; ')}`);
    const p = report.perMessage;
    log(
      `  group of ${report.groupSize}: ${client.accepted} messages at ${options.rate}/s to ${options.subscribers} subscribers, ` +
        `p50 ${client.latency.p50.toFixed(1)} p99 ${client.latency.p99.toFixed(1)} ms; per message: ` +
        `${p.rowsTotal.toFixed(2)} rows ${JSON.stringify(rows)}, ${p.bytesTotal.toFixed(0)} bytes, WAL ${p.walBytes.toFixed(0)} bytes, ` +
        `${p.transactions.toFixed(3)} transactions, ${p.queries.toFixed(2)} queries, ${p.events.toFixed(2)} events, ` +
        `server ${p.serverCpuMs.toFixed(2)} ms, database ${p.databaseCpuMs.toFixed(3)} ms CPU; other load ${report.otherCores.toFixed(2)} cores`,
    );
    before = after;
  }
  return groups.map(({ built }) =>
    medianReport(runs.filter((run) => run.groupSize === built.members.length)),
  );
}

/** One report of the medians of several runs of one group size. */
function medianReport(runs: SizeReport[]): SizeReport {
  const [first] = runs;
  if (first === undefined) throw new Error('no runs');
  const m = (value: (run: SizeReport) => number) => median(runs.map(value));
  const perTable = (pick: (run: SizeReport) => Record<string, number>) =>
    Object.fromEntries(
      [...new Set(runs.flatMap((run) => Object.keys(pick(run))))].map((table) => [
        table,
        m((run) => pick(run)[table] ?? 0),
      ]),
    );
  return {
    groupSize: first.groupSize,
    runs: runs.length,
    buildMs: first.buildMs,
    adds: first.adds,
    latency: { p50: m((run) => run.latency.p50), p99: m((run) => run.latency.p99) },
    perMessage: {
      rows: perTable((run) => run.perMessage.rows),
      rowsTotal: m((run) => run.perMessage.rowsTotal),
      bytes: perTable((run) => run.perMessage.bytes),
      bytesTotal: m((run) => run.perMessage.bytesTotal),
      walBytes: m((run) => run.perMessage.walBytes),
      transactions: m((run) => run.perMessage.transactions),
      queries: m((run) => run.perMessage.queries),
      serverCpuMs: m((run) => run.perMessage.serverCpuMs),
      databaseCpuMs: m((run) => run.perMessage.databaseCpuMs),
      events: m((run) => run.perMessage.events),
    },
    otherCores: m((run) => run.otherCores),
    loadAverage: m((run) => run.loadAverage),
    problems: runs.flatMap((run) => run.problems),
  };
}
