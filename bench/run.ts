/**
 * `npm run bench`: Parley's benchmarks on PostgreSQL, printed as tables. Not a test: nothing
 * here asserts a timing. bench/README.md says what each figure means and what was measured.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { type CommitRun, commits } from './commits.js';
import { LoadThread } from './load.js';
import { type BenchDatabase, countQueries, freshDatabase, startParley } from './server.js';
import { type SizeReport, sizes } from './sizes.js';
import { fmt, median, table } from './stats.js';
import { type MeasuredRun, throughput, type ThroughputReport } from './throughput.js';
import { type TimerReport, type TimerRun, timers } from './timers.js';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const numbers = (name: string, fallback: string) =>
  env(name, fallback).split(',').filter(Boolean).map(Number);
const adminUrl = env('PARLEY_BENCH_DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/test');
const sections = new Set(env('PARLEY_BENCH_SECTIONS', 'a,c,d').split(','));
const quietCores = Number(env('PARLEY_BENCH_QUIET_CORES', '0.3'));

const log = (line: string) => {
  console.log(line);
};

// Databases this run created, dropped even when the run is interrupted.
const databases = new Set<BenchDatabase>();
async function createDatabase(): Promise<BenchDatabase> {
  const database = await freshDatabase(adminUrl);
  databases.add(database);
  return database;
}
async function dropDatabase(database: BenchDatabase): Promise<void> {
  databases.delete(database);
  await database.drop();
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: dropping the benchmark databases`);
    void Promise.allSettled([...databases].map((database) => database.drop())).then(() => {
      process.exit(130);
    });
  });
}

function throughputTables(report: ThroughputReport): string {
  const labels = [...new Set(report.runs.map((run) => run.label))];
  const rows: string[][] = [];
  const ratios: string[][] = [];
  const pick = (label: string, pipeline: MeasuredRun['pipeline']) =>
    report.runs.filter((run) => run.label === label && run.pipeline === pipeline);
  const m = (runs: MeasuredRun[], value: (run: MeasuredRun) => number) => median(runs.map(value));
  for (const label of labels) {
    for (const pipeline of ['parley', 'baseline'] as const) {
      const runs = pick(label, pipeline);
      rows.push([
        label === 'max' ? 'closed loop' : `${label} open`,
        pipeline,
        String(runs.length),
        fmt(m(runs, (run) => run.client.deliveredRate)),
        fmt(
          m(runs, (run) => run.client.latency.p50),
          1,
        ),
        fmt(
          m(runs, (run) => run.client.latency.p99),
          1,
        ),
        fmt(
          m(runs, (run) => run.client.ack.p99),
          1,
        ),
        `${m(runs, (run) => run.client.receipts)}/${m(runs, (run) => run.client.expectedReceipts)}`,
        fmt(
          m(runs, (run) => run.serverCpuPerMessage),
          2,
        ),
        fmt(
          m(runs, (run) => run.serverThreadShare),
          2,
        ),
        fmt(
          m(runs, (run) => run.clientThreadShare),
          2,
        ),
        fmt(
          m(runs, (run) => run.databaseCpuPerMessage),
          3,
        ),
        fmt(
          m(runs, (run) => run.messagesPerTransaction),
          1,
        ),
        fmt(
          m(runs, (run) => run.otherCores),
          2,
        ),
      ]);
    }
    const parley = pick(label, 'parley');
    const baseline = pick(label, 'baseline');
    const ratio = (value: (run: MeasuredRun) => number) => m(parley, value) / m(baseline, value);
    ratios.push([
      label === 'max' ? 'closed loop' : `${label} open`,
      fmt(
        ratio((run) => run.client.deliveredRate),
        2,
      ),
      fmt(
        ratio((run) => run.client.latency.p50),
        1,
      ),
      fmt(
        ratio((run) => run.client.latency.p99),
        1,
      ),
    ]);
  }
  const { setup } = report;
  return [
    `(a)+(b) one group of ${setup.groupSize} devices, ${setup.subscribers} live subscribers, ${setup.senders} senders, ` +
      `PrivateMessages of ${setup.messageBytes} bytes (ts-mls encryption ${fmt(setup.encryptMs, 2)} ms each, before the timed windows); medians of the runs`,
    table(
      [
        'load',
        'pipeline',
        'runs',
        'delivered msg/s',
        'p50 ms',
        'p99 ms',
        'ack p99 ms',
        'receipts',
        'server CPU ms/msg',
        'server thread',
        'load thread',
        'db CPU ms/msg',
        'msgs/tx',
        'other cores',
      ],
      rows,
    ),
    '',
    'Parley / baseline (medians)',
    table(['load', 'throughput', 'p50 latency', 'p99 latency'], ratios),
  ].join('\n');
}

function commitTable(runs: CommitRun[]): string {
  const sizes = [...new Set(runs.map((run) => run.added))];
  return [
    '(c) submitCommitBundle adding members to a new group (medians; min–max of the wall time)',
    table(
      [
        'added',
        'runs',
        'wall ms',
        'min–max ms',
        'MLS checks ms',
        'transaction ms',
        'publish ms',
        'HTTP+GraphQL ms',
        'commit+welcome+groupinfo KiB',
        'ts-mls client ms',
      ],
      sizes.map((added) => {
        const of = runs.filter((run) => run.added === added);
        const m = (value: (run: CommitRun) => number) => median(of.map(value));
        const walls = of.map((run) => run.wallMs);
        return [
          String(added),
          String(of.length),
          fmt(m((run) => run.wallMs)),
          `${fmt(Math.min(...walls))}–${fmt(Math.max(...walls))}`,
          fmt(m((run) => run.checkMs)),
          fmt(m((run) => run.transactionMs)),
          fmt(
            m((run) => run.publishMs),
            1,
          ),
          fmt(m((run) => run.outsideServiceMs)),
          `${fmt(m((run) => run.commitBytes) / 1024)}+${fmt(m((run) => run.welcomeBytes) / 1024)}+${fmt(m((run) => run.groupInfoBytes) / 1024)}`,
          fmt(m((run) => run.clientMs)),
        ];
      }),
    ),
  ].join('\n');
}

function sizesTable(reports: SizeReport[]): string {
  const tables = [...new Set(reports.flatMap((report) => Object.keys(report.perMessage.rows)))];
  const metric = (name: string, value: (report: SizeReport) => string) => [
    name,
    ...reports.map(value),
  ];
  return [
    `(d) per application message, by group size (same offered load and live subscribers; medians of ${String(reports[0]?.runs ?? 0)} runs each)`,
    table(
      ['per message', ...reports.map((report) => `group of ${report.groupSize}`)],
      [
        metric('rows written', (r) => fmt(r.perMessage.rowsTotal, 2)),
        ...tables.map((name) => metric(`  ${name}`, (r) => fmt(r.perMessage.rows[name] ?? 0, 3))),
        metric('bytes stored (tables+indexes)', (r) => fmt(r.perMessage.bytesTotal)),
        metric('WAL bytes (cluster)', (r) => fmt(r.perMessage.walBytes)),
        metric('transactions', (r) => fmt(r.perMessage.transactions, 3)),
        metric('queries', (r) => fmt(r.perMessage.queries, 2)),
        metric('events published', (r) => fmt(r.perMessage.events, 2)),
        metric('server CPU ms', (r) => fmt(r.perMessage.serverCpuMs, 2)),
        metric('database CPU ms', (r) => fmt(r.perMessage.databaseCpuMs, 3)),
        metric(
          'latency p50 / p99 ms',
          (r) => `${fmt(r.latency.p50, 1)} / ${fmt(r.latency.p99, 1)}`,
        ),
        metric('other cores', (r) => fmt(r.otherCores, 2)),
        metric('group built in s', (r) => `${fmt(r.buildMs / 1000, 1)} (${r.adds.length} commits)`),
      ],
    ),
  ].join('\n');
}

function timersTables(report: TimerReport): string {
  const runs = report.stream;
  const [off, on] = runs;
  const lines = [
    '(timers) expiring messages: lateness of deletion and cost against the same stream untimed',
    table(
      [
        'run',
        'msgs/min',
        'sent',
        'deleted',
        'left over',
        'lateness p50 ms',
        'p99 ms',
        'max ms',
        'sweeps',
        'sweeper ms',
        'process CPU ms/msg',
        'db CPU ms/msg',
      ],
      runs.map((run) => [
        run.label,
        fmt(run.acceptedPerMinute, 0),
        String(run.sent),
        String(run.deleted),
        String(run.leftOver),
        fmt(run.latenessMs.p50, 1),
        fmt(run.latenessMs.p99, 1),
        fmt(run.latenessMs.max, 1),
        String(run.sweeps),
        fmt(run.sweepMs, 0),
        fmt(run.processCpuPerMessage, 3),
        fmt(run.databaseCpuPerMessage, 3),
      ]),
    ),
  ];
  if (off !== undefined && on !== undefined && on.deleted > 0) {
    const perMinute = (ms: number, run: TimerRun) => (ms * 60) / run.seconds;
    lines.push(
      `sweeper: ${fmt(perMinute(on.sweepMs, on), 0)} ms of statements per minute, ` +
        `${fmt((on.sweepMs / on.deleted) * 1000, 0)} ms per 1,000 deletions; ` +
        `process CPU per message ×${fmt(on.processCpuPerMessage / off.processCpuPerMessage, 2)}, ` +
        `database CPU per message ×${fmt(on.databaseCpuPerMessage / off.databaseCpuPerMessage, 2)} of the untimed run`,
    );
  }
  lines.push(
    '',
    '(timers) the sweeper alone: rows expiring at a steady rate against an idle window as long',
    table(
      [
        'window',
        'seconds',
        'expiring',
        'deleted',
        'lateness p50 ms',
        'p99 ms',
        'max ms',
        'sweeps',
        'sweeper ms',
        'server CPU ms',
        'db CPU ms',
      ],
      report.sweeper.map((run) => [
        run.label,
        fmt(run.seconds, 0),
        String(run.expiring),
        String(run.deleted),
        fmt(run.latenessMs.p50, 1),
        fmt(run.latenessMs.p99, 1),
        fmt(run.latenessMs.max, 1),
        String(run.sweeps),
        fmt(run.sweepMs, 0),
        fmt(run.processCpuMs, 0),
        fmt(run.databaseCpuMs, 0),
      ]),
    ),
  );
  const [idle, busy] = report.sweeper;
  if (idle !== undefined && busy !== undefined && busy.deleted > 0) {
    const extra = (key: 'processCpuMs' | 'databaseCpuMs') =>
      ((busy[key] - idle[key]) / busy.deleted) * 1000;
    lines.push(
      `sweeper cost over idle: server ${fmt(extra('processCpuMs'), 0)} ms and database ` +
        `${fmt(extra('databaseCpuMs'), 0)} ms of CPU per 1,000 deletions ` +
        `(${fmt(((busy.processCpuMs - idle.processCpuMs) / busy.seconds) * 0.1, 2)} % and ` +
        `${fmt(((busy.databaseCpuMs - idle.databaseCpuMs) / busy.seconds) * 0.1, 2)} % of one core)`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  countQueries();
  const started = performance.now();
  log(
    `Parley benchmarks: Node ${process.version}, ${os.cpus().length} cores, ` +
      `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; PostgreSQL at ${new URL(adminUrl).host}`,
  );
  const results: Record<string, unknown> = {};
  const printed: string[] = [];

  if (sections.has('a')) {
    log('(a)+(b) throughput into one group, Parley and the raw baseline');
    const database = await createDatabase();
    try {
      const report = await throughput(database, {
        groupSize: Number(env('PARLEY_BENCH_GROUP_SIZE', '100')),
        senders: Number(env('PARLEY_BENCH_SENDERS', '5')),
        socketsPerSender: 32,
        rates: numbers('PARLEY_BENCH_RATES', '100,250,500,1000'),
        seconds: Number(env('PARLEY_BENCH_SECONDS', '4')),
        repeats: Number(env('PARLEY_BENCH_REPEATS', '3')),
        closedWindow: Number(env('PARLEY_BENCH_WINDOW', '64')),
        plaintextBytes: Number(env('PARLEY_BENCH_PLAINTEXT_BYTES', '900')),
        poolSize: Number(env('PARLEY_BENCH_POOL', '8000')),
        quietCores,
        retries: Number(env('PARLEY_BENCH_RETRIES', '2')),
        pipelines: env('PARLEY_BENCH_PIPELINES', 'parley,baseline').split(',') as (
          'parley' | 'baseline'
        )[],
        log,
      });
      results.throughput = report;
      printed.push(throughputTables(report));
    } finally {
      await dropDatabase(database);
    }
  }

  if (sections.has('c') || sections.has('d')) {
    const database = await createDatabase();
    const parley = await startParley(database.url);
    const load = new LoadThread();
    try {
      if (sections.has('c')) {
        log('(c) commits adding members');
        const runs = await commits(parley, {
          sizes: numbers('PARLEY_BENCH_ADD_SIZES', '100,500'),
          runs: Number(env('PARLEY_BENCH_ADD_RUNS', '5')),
          devicesPerUser: 10,
          quietCores,
          log,
        });
        results.commits = runs;
        printed.push(commitTable(runs));
      }
      if (sections.has('d')) {
        log('(d) work and storage per message by group size');
        const reports = await sizes(parley, database, load, {
          sizes: numbers('PARLEY_BENCH_GROUP_SIZES', '10,1000'),
          devicesPerUser: 9,
          usersPerCommit: 12,
          subscribers: 10,
          messages: Number(env('PARLEY_BENCH_SIZE_MESSAGES', '600')),
          repeats: Number(env('PARLEY_BENCH_SIZE_REPEATS', '3')),
          rate: Number(env('PARLEY_BENCH_SIZE_RATE', '200')),
          plaintextBytes: Number(env('PARLEY_BENCH_PLAINTEXT_BYTES', '900')),
          quietCores,
          log,
        });
        results.sizes = reports;
        printed.push(sizesTable(reports));
      }
    } finally {
      await load.close().catch(() => undefined);
      await parley.close();
      await dropDatabase(database);
    }
  }

  if (sections.has('timers')) {
    log('(timers) deleting expired messages');
    const database = await createDatabase();
    const parley = await startParley(database.url);
    try {
      const runs = await timers(parley, database, {
        conversations: Number(env('PARLEY_BENCH_TIMER_CONVERSATIONS', '100')),
        perMinute: Number(env('PARLEY_BENCH_TIMER_PER_MINUTE', '10000')),
        seconds: Number(env('PARLEY_BENCH_TIMER_SECONDS', '30')),
        sweeperSeconds: Number(env('PARLEY_BENCH_SWEEPER_SECONDS', '60')),
        log,
      });
      results.timers = runs;
      printed.push(timersTables(runs));
    } finally {
      await parley.close();
      await dropDatabase(database);
    }
  }

  const file = new URL(
    `./results-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
    import.meta.url,
  );
  writeFileSync(file, JSON.stringify(results, null, 2));
  log('');
  log(printed.join('\n\n'));
  log('');
  log(
    `total ${((performance.now() - started) / 1000).toFixed(0)} s; raw figures in ${file.pathname}`,
  );
}

await main();
