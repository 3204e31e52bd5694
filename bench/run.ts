/**
 * `npm run bench`: Parley's benchmarks on PostgreSQL, printed as tables. Not a test: nothing
 * here asserts a timing. bench/README.md says what each figure means and what was measured.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { type CommitRun, commits } from './commits.js';
import { conversationsBench, conversationsOptions, conversationsTable } from './conversations.js';
import { LoadThread } from './load.js';
import { type ScaleReport, type ScaleRun, scaleout } from './scaleout.js';
import { type BenchDatabase, countQueries, freshDatabase, startParley } from './server.js';
import { type SizeReport, sizes } from './sizes.js';
import { subscribers, type SubscribersReport } from './subscribers.js';
import { fmt, median, table } from './stats.js';
import { type MeasuredRun, throughput, type ThroughputReport } from './throughput.js';
import { type TimerReport, type TimerRun, timers } from './timers.js';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const numbers = (name: string, fallback: string) =>
  env(name, fallback).split(',').filter(Boolean).map(Number);
const adminUrl = env('PARLEY_BENCH_DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/test');
const sections = new Set(env('PARLEY_BENCH_SECTIONS', 'a,c,d,e,f').split(','));
// Names some write for (a) and (c)/(f).
if (sections.has('throughput')) sections.add('a');
if (sections.has('commits')) sections.add('c');
const quietCores = Number(env('PARLEY_BENCH_QUIET_CORES', '0.3'));
const redisUrl = env('PARLEY_BENCH_REDIS_URL', 'redis://127.0.0.1:6379');

const log = (line: string) => {
  console.log(line);
};

// Runs that did not complete, by section: printed at the end, and the exit status is 1.
const failures: string[] = [];

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

function subscribersTable(report: SubscribersReport): string {
  return table(
    [
      'subscribers',
      'live',
      'failed',
      'server heap KiB each',
      'server RSS KiB each',
      'all live ms',
      'p50 ms',
      'p99 ms',
    ],
    [
      [
        `${report.idle} idle`,
        String(report.idleLive),
        String(report.idleFailed),
        fmt(report.heapPerSubscriberKiB, 1),
        fmt(report.rssPerSubscriberKiB, 1),
        '—',
        '—',
        '—',
      ],
      [
        `${report.burst} at once`,
        String(report.burstLive),
        String(report.burstFailed),
        '—',
        '—',
        fmt(report.burstAllLiveMs),
        fmt(report.burstP50Ms),
        fmt(report.burstP99Ms),
      ],
    ],
  );
}

function throughputTables(report: ThroughputReport): string {
  const labels = [...new Set(report.runs.map((run) => run.label))];
  const rows: string[][] = [];
  const ratios: string[][] = [];
  const pick = (label: string, pipeline: MeasuredRun['pipeline']) =>
    report.runs.filter((run) => run.label === label && run.pipeline === pipeline);
  const m = (runs: MeasuredRun[], value: (run: MeasuredRun) => number) => median(runs.map(value));
  const failedCells = (runs: MeasuredRun[]) => {
    const failed = runs.filter((run) => !run.client.complete);
    // No figure from a set of runs of which one did not complete: it would flatter.
    return [
      String(runs.length),
      `**FAILED** (${failed.length} of ${runs.length} runs: ${failed[0]?.client.problems.join('; ') ?? ''})`,
      ...Array.from({ length: 10 }, () => ''),
      fmt(
        m(runs, (run) => run.loadAverage),
        2,
      ),
    ];
  };
  const anyFailed = (runs: MeasuredRun[]) => runs.some((run) => !run.client.complete);
  for (const label of labels) {
    for (const pipeline of ['parley', 'baseline'] as const) {
      const runs = pick(label, pipeline);
      if (runs.length === 0) continue;
      const loadName = label === 'max' ? 'closed loop' : `${label} open`;
      if (anyFailed(runs)) {
        rows.push([loadName, pipeline, ...failedCells(runs)]);
        continue;
      }
      rows.push([
        loadName,
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
        fmt(
          m(runs, (run) => run.loadAverage),
          2,
        ),
      ]);
    }
    const parley = pick(label, 'parley');
    const baseline = pick(label, 'baseline');
    const ratio = (value: (run: MeasuredRun) => number) =>
      anyFailed(parley) || anyFailed(baseline) || parley.length === 0 || baseline.length === 0
        ? Number.NaN
        : m(parley, value) / m(baseline, value);
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
    `(a)+(b) one group of ${setup.groupSize} devices, ${setup.subscribers} live subscribers, ${setup.senders} senders, ${setup.bus} bus, ` +
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
        'load avg',
      ],
      rows,
    ),
    '',
    'Parley / baseline (medians)',
    table(['load', 'throughput', 'p50 latency', 'p99 latency'], ratios),
  ].join('\n');
}

function scaleTable(report: ScaleReport): string {
  const { setup } = report;
  const rows: string[][] = [];
  const medians: Record<number, number> = {};
  const adjusted: Record<number, number> = {};
  const perCore: Record<number, number> = {};
  for (const count of [...new Set(report.runs.map((run) => run.instances))]) {
    const runs = report.runs.filter((run) => run.instances === count);
    const m = (value: (run: ScaleRun) => number) => median(runs.map(value));
    const failed = runs.filter((run) => !run.client.complete);
    if (failed.length > 0) {
      rows.push([
        String(count),
        String(runs.length),
        `**FAILED** (${failed.length} of ${runs.length} runs: ${failed[0]?.client.problems.join('; ') ?? ''})`,
        ...Array.from({ length: 12 }, () => ''),
        fmt(
          m((run) => run.loadAverage),
          2,
        ),
      ]);
      continue;
    }
    medians[count] = m((run) => run.deliveredRate);
    adjusted[count] = m((run) => run.withoutLoadGenerator);
    perCore[count] = m((run) => run.perServerCore);
    rows.push([
      String(count),
      String(runs.length),
      fmt(m((run) => run.deliveredRate)),
      fmt(m((run) => run.deliveriesPerSecond)),
      fmt(
        m((run) => run.client.latency.p50),
        1,
      ),
      fmt(
        m((run) => run.client.latency.p99),
        1,
      ),
      `${m((run) => run.client.receipts)}/${m((run) => run.client.expectedReceipts)}`,
      fmt(
        m((run) => run.serverCpuPerMessage),
        2,
      ),
      fmt(
        m((run) => run.serverCores),
        2,
      ),
      fmt(
        m((run) => run.loadCores),
        2,
      ),
      fmt(
        m((run) => run.redisCores),
        2,
      ),
      fmt(
        m((run) => run.databaseCores),
        2,
      ),
      fmt(
        m((run) => run.machineCores),
        2,
      ),
      fmt(m((run) => run.withoutLoadGenerator)),
      fmt(m((run) => run.perServerCore)),
      fmt(
        m((run) => run.loadAverage),
        2,
      ),
    ]);
  }
  const ratio = (of: Record<number, number>) =>
    fmt((of[2] ?? Number.NaN) / (of[1] ?? Number.NaN), 2);
  return [
    `(e) ${setup.groups} groups of ${setup.groupSize} devices, ${setup.subscribers} live subscribers, ` +
      `closed loop, one instance against two sharing Redis (each its own process); ${setup.cores} cores available; medians`,
    table(
      [
        'instances',
        'runs',
        'delivered msg/s',
        'deliveries/s',
        'p50 ms',
        'p99 ms',
        'receipts',
        'server CPU ms/msg',
        'server cores',
        'load gen cores',
        'redis cores',
        'db cores',
        'machine cores',
        'msg/s without load gen',
        'msg/s per server core',
        'load avg',
      ],
      rows,
    ),
    `two / one instance: ${ratio(medians)} as measured; ${ratio(adjusted)} with the load generator's CPU given to the system under test; ` +
      `${ratio(perCore)} in msg/s per core the instances used`,
  ].join('\n');
}

function commitTable(runs: CommitRun[]): string {
  // (c) adds to a new group (its creator alone); (f) adds 1 to a large group, which grows by 1
  // with each run: one row per (added, first run's group size).
  const kinds = [...new Set(runs.map((run) => `${run.added}:${run.into > 1 ? 'f' : 'c'}`))];
  return [
    '(c) submitCommitBundle adding members to a new group, (f) adding 1 member to a large group ' +
      '(medians; min–max of the wall time)',
    table(
      [
        'section',
        'added',
        'into',
        'runs',
        'wall ms',
        'min–max ms',
        'MLS checks ms',
        'transaction ms',
        'publish ms',
        'HTTP+GraphQL ms',
        'commit+welcome+groupinfo KiB',
        'ts-mls client ms',
        'load avg',
      ],
      kinds.map((kind) => {
        const of = runs.filter((run) => `${run.added}:${run.into > 1 ? 'f' : 'c'}` === kind);
        const m = (value: (run: CommitRun) => number) => median(of.map(value));
        const walls = of.map((run) => run.wallMs);
        const intos = of.map((run) => run.into);
        return [
          kind.endsWith('f') ? '(f)' : '(c)',
          String(of[0]?.added ?? 0),
          Math.min(...intos) === Math.max(...intos)
            ? String(intos[0] ?? 0)
            : `${Math.min(...intos)}–${Math.max(...intos)}`,
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
          fmt(
            m((run) => run.loadAverage),
            2,
          ),
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
  const failed = reports.filter((report) => report.problems.length > 0);
  if (failed.length > 0) {
    // No figure from runs that did not deliver everything.
    return failed
      .map(
        (report) => `(d) group of ${report.groupSize}: **FAILED** (${report.problems.join('; ')})`,
      )
      .join('\n');
  }
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
        metric('load average', (r) => fmt(r.loadAverage, 2)),
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
        redisUrl: env('PARLEY_BENCH_BUS', 'memory') === 'redis' ? redisUrl : null,
        log,
      });
      results.throughput = report;
      for (const run of report.runs) {
        if (!run.client.complete) {
          failures.push(`(a) ${run.pipeline} ${run.label}: ${run.client.problems.join('; ')}`);
        }
      }
      printed.push(throughputTables(report));
    } finally {
      await dropDatabase(database);
    }
  }

  if (sections.has('c') || sections.has('d') || sections.has('f')) {
    const database = await createDatabase();
    const parley = await startParley(database.url);
    const load = new LoadThread();
    try {
      if (sections.has('c') || sections.has('f')) {
        log('(c)/(f) commits adding members');
        const runs = await commits(parley, {
          sizes: sections.has('c') ? numbers('PARLEY_BENCH_ADD_SIZES', '100,500') : [],
          oneInto: sections.has('f') ? numbers('PARLEY_BENCH_ADD_INTO', '1000') : [],
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
        for (const report of reports) {
          if (report.problems.length > 0) {
            failures.push(`(d) group of ${report.groupSize}: ${report.problems.join('; ')}`);
          }
        }
        printed.push(sizesTable(reports));
      }
    } finally {
      await load.close().catch(() => undefined);
      await parley.close();
      await dropDatabase(database);
    }
  }

  if (sections.has('e')) {
    log('(e) one instance against two with Redis, over many small groups');
    const database = await createDatabase();
    try {
      const report = await scaleout(database, {
        groups: Number(env('PARLEY_BENCH_SCALE_GROUPS', '200')),
        groupSize: Number(env('PARLEY_BENCH_SCALE_GROUP_SIZE', '10')),
        senders: 4,
        socketsPerSender: 32,
        window: Number(env('PARLEY_BENCH_SCALE_WINDOW', '64')),
        seconds: Number(env('PARLEY_BENCH_SECONDS', '4')),
        repeats: Number(env('PARLEY_BENCH_REPEATS', '3')),
        poolSize: Number(env('PARLEY_BENCH_POOL', '8000')),
        plaintextBytes: Number(env('PARLEY_BENCH_PLAINTEXT_BYTES', '900')),
        redisUrl,
        quietCores,
        log,
      });
      results.scaleout = report;
      for (const run of report.runs) {
        if (!run.client.complete) {
          failures.push(`(e) ${run.instances} instance(s): ${run.client.problems.join('; ')}`);
        }
      }
      printed.push(scaleTable(report));
    } finally {
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

  if (sections.has('conversations')) {
    log('(conversations) listing the conversations of a device in big groups');
    const report = await conversationsBench(adminUrl, conversationsOptions(log));
    results.conversations = report;
    printed.push(conversationsTable(report));
  }

  if (sections.has('subscribers')) {
    log('(subscribers) heap per idle subscriber, and 1,000 subscribers connecting at once');
    const report = await subscribers(
      adminUrl,
      {
        idle: Number(env('PARLEY_BENCH_IDLE_SUBSCRIBERS', '10000')),
        burst: Number(env('PARLEY_BENCH_BURST_SUBSCRIBERS', '1000')),
        devices: Number(env('PARLEY_BENCH_SUBSCRIBER_DEVICES', '100')),
      },
      log,
    );
    results.subscribers = report;
    printed.push(subscribersTable(report));
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
  if (failures.length > 0) {
    log(`${failures.length} runs FAILED (no figure is reported for them):`);
    for (const failure of failures) log(`  ${failure}`);
    process.exitCode = 1;
  }
}

await main();
