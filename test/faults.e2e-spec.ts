import { createClient } from 'graphql-ws';
import pg from 'pg';
import {
  DataSource,
  QueryRunnerAlreadyReleasedError,
  QueryRunnerProviderAlreadyReleasedError,
} from 'typeorm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';
import { isDatabaseUnavailable } from '../apps/server/src/database/errors.js';
import { b64, dataOf } from './support/graphql.js';
import type { MlsGroup } from '@parley/mls-member';
import { OwnParley, TransportError } from './support/own-parley.js';
import {
  type OwnPostgres,
  ownPostgresSkipReason,
  startOwnPostgres,
} from './support/own-postgres.js';
import { type OwnRedis, ownRedisSkipReason, startOwnRedis } from './support/own-redis.js';
import { EVENTS_SUBSCRIPTION, type LiveEvent, ParleyDevice } from './support/parley-client.js';
import { RELAXED_RATE_LIMITS_ENV, testDatabase } from './support/test-app.js';

/*
 * The fault suite: its own PostgreSQL and Redis, two Parley instances as real processes, live
 * subscribers and steady senders on both, and in turn: kill -9 of an instance, kill -9 and
 * SIGSTOP of PostgreSQL, kill -9 and SIGSTOP of Redis. It runs once, in the e2e:postgres project.
 */
const skipReason =
  testDatabase !== 'postgres'
    ? 'runs in the e2e:postgres project only'
    : (ownPostgresSkipReason() ?? ownRedisSkipReason());
if (testDatabase === 'postgres' && skipReason !== undefined)
  console.warn(`fault suite skipped: ${skipReason}`);

/** Client-side patience for one request: a retry after it may meet the first attempt's commit. */
const REQUEST_TIMEOUT_MS = 3_000;
/** Senders give a message up after this long (counted, and the suite fails). */
const GIVE_UP_MS = 60_000;
const CONVERSATIONS = 4;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(condition: () => Promise<boolean>, ms: number, what: string) {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
  return Date.now() - started;
}

/** Milliseconds at quantile q (0–1). */
function quantile(samples: number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}

/** Counts by key, printed as `KEY×n`. */
class Tally {
  readonly counts = new Map<string, number>();
  add(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }
  toString(): string {
    return [...this.counts].map(([key, n]) => `${key}×${n}`).join(', ') || 'none';
  }
}

/** What clients saw: GraphQL error codes, and failures without a GraphQL answer. */
const graphqlCodes = new Tally();
const transportFailures = new Tally();
/** The current phase, stamped on each send when it starts. */
let phase = 'baseline';

function codeOf(error: unknown): string {
  const code = (error as { extensions?: { code?: unknown } } | null)?.extensions?.code;
  return typeof code === 'string' ? code : `UNTYPED (${JSON.stringify(error).slice(0, 120)})`;
}

interface Acked {
  seq: number;
  message: string;
  text: string;
}

interface Send {
  phase: string;
  ms: number;
  attempts: number;
  /** An earlier attempt ended without an answer (timeout, reset): it may have been stored. */
  ambiguous: boolean;
}

/** A member that sends steadily, retrying the same bytes on failure on the other instance. */
class Sender {
  readonly acked: Acked[] = [];
  readonly sends: Send[] = [];
  gaveUp = 0;
  private stopping = false;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly name: string,
    private readonly via: [ParleyDevice, ParleyDevice],
    private readonly group: MlsGroup,
    private readonly conversationId: string,
  ) {}

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.done;
  }

  private async loop(): Promise<void> {
    for (let n = 0; !this.stopping; n += 1) {
      const text = `${this.name} message ${n}`;
      const bytes = await this.group.encrypt(text);
      const started = performance.now();
      const startedIn = phase;
      let attempts = 0;
      let ambiguous = false;
      let target = n % 2;
      for (;;) {
        attempts += 1;
        const outcome = await this.attempt(this.via[target] as ParleyDevice, bytes);
        if (typeof outcome === 'number') {
          this.acked.push({ seq: outcome, message: b64(bytes), text });
          this.sends.push({
            phase: startedIn,
            ms: performance.now() - started,
            attempts,
            ambiguous,
          });
          break;
        }
        if (outcome === 'ambiguous') ambiguous = true;
        if (performance.now() - started > GIVE_UP_MS) {
          this.gaveUp += 1;
          break;
        }
        target = 1 - target;
        await sleep(Math.min(1_000, 50 * attempts));
      }
      await sleep(40);
    }
  }

  /**
   * One try: the seq; or, after recording why it failed, `ambiguous` when no answer came after
   * the request was sent (the server may have stored it), else undefined.
   */
  private async attempt(
    device: ParleyDevice,
    bytes: Uint8Array,
  ): Promise<number | 'ambiguous' | undefined> {
    try {
      const response = await device.send(this.conversationId, bytes);
      if (response.errors !== undefined && response.errors.length > 0) {
        for (const error of response.errors) graphqlCodes.add(codeOf(error));
        return undefined;
      }
      const seq = response.data?.sendMessage.seq;
      if (typeof seq !== 'number') {
        graphqlCodes.add('UNTYPED (no data, no errors)');
        return undefined;
      }
      return seq;
    } catch (error) {
      if (!(error instanceof TransportError)) throw error;
      transportFailures.add(`sendMessage: ${error.kind}`);
      return error.kind === 'ECONNREFUSED' ? undefined : 'ambiguous';
    }
  }
}

/**
 * A member listening live: subscribes (the other instance after a failure), catches up from its
 * cursor with messages(after:) once the stream is live, and keeps every seq it was given.
 */
class Reader {
  readonly seqs = new Set<number>();
  live = 0;
  caughtUp = 0;
  /** New entries heard live, by the phase they came in. */
  readonly liveByPhase = new Tally();
  /** Live entries that came after a higher seq on the same stream (the stream is in order). */
  outOfOrder = 0;
  connects = 0;
  readonly endings = new Tally();
  private stopping = false;
  private dispose: ((why: string) => void) | null = null;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly via: [ParleyDevice, ParleyDevice],
    private readonly instances: [OwnParley, OwnParley],
    private readonly conversationId: string,
    private readonly joinedAt: number,
    private target: number,
  ) {}

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.dispose?.('stopped');
    await this.done;
  }

  private stopped(): boolean {
    return this.stopping;
  }

  /** Ends the current stream, as a client going away would: it reconnects and catches up. */
  bounce(): void {
    this.dispose?.('bounced');
  }

  /** The highest seq below which nothing is missing. */
  private cursor(): number {
    let cursor = this.joinedAt;
    while (this.seqs.has(cursor + 1)) cursor += 1;
    return cursor;
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      const ending = await this.session(this.target);
      // stop() may have been called while the session ran.
      if (this.stopped()) return;
      this.endings.add(ending);
      this.target = 1 - this.target;
      await sleep(200);
    }
  }

  /** One connection, until it ends; why it ended. */
  private async session(target: number): Promise<string> {
    const device = this.via[target] as ParleyDevice;
    const instance = this.instances[target] as OwnParley;
    const client = createClient({
      url: instance.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${device.token}` },
      retryAttempts: 0,
      shouldRetry: () => false,
    });
    this.connects += 1;
    return new Promise<string>((resolve) => {
      let ended = false;
      let lastLive = 0;
      const end = (why: string) => {
        if (ended) return;
        ended = true;
        this.dispose = null;
        void client.dispose();
        resolve(why);
      };
      this.dispose = (why) => {
        end(why);
      };
      const catchUp = async () => {
        try {
          for (let pages = 0; pages < 1_000 && !ended; pages += 1) {
            const response = await device.page(this.conversationId, this.cursor());
            if (response.errors !== undefined) {
              for (const error of response.errors) graphqlCodes.add(codeOf(error));
              end(`catch-up ${codeOf(response.errors[0])}`);
              return;
            }
            const page = response.data?.messages;
            if (page === undefined) throw new Error('no page');
            for (const entry of page.entries) {
              if (!this.seqs.has(entry.seq)) this.caughtUp += 1;
              this.seqs.add(entry.seq);
            }
            if (!page.hasMore) return;
          }
        } catch (error) {
          if (!(error instanceof TransportError)) throw error;
          transportFailures.add(`messages: ${error.kind}`);
          end(`catch-up ${error.kind}`);
        }
      };
      client.subscribe<{ events: LiveEvent }>(
        { query: EVENTS_SUBSCRIPTION, variables: { deviceId: device.deviceId } },
        {
          next: (result) => {
            if (result.errors !== undefined) {
              for (const error of result.errors) graphqlCodes.add(codeOf(error));
              end(codeOf(result.errors[0]));
              return;
            }
            const event = result.data?.events;
            if (event?.__typename === 'SubscribedEvent') void catchUp();
            const entry = event?.entry;
            if (entry !== undefined && entry.conversationId === this.conversationId) {
              if (entry.seq < lastLive) this.outOfOrder += 1;
              lastLive = Math.max(lastLive, entry.seq);
              if (!this.seqs.has(entry.seq)) {
                this.live += 1;
                this.liveByPhase.add(phase);
              }
              this.seqs.add(entry.seq);
            }
          },
          error: (error: unknown) => {
            if (Array.isArray(error)) {
              for (const each of error) graphqlCodes.add(codeOf(each));
              end(codeOf(error[0]));
            } else if (error instanceof Error) {
              transportFailures.add(`live: ${error.message.slice(0, 60)}`);
              end(`socket error`);
            } else {
              const code = (error as { code?: unknown }).code;
              transportFailures.add(`live: closed ${String(code)}`);
              end(`closed ${String(code)}`);
            }
          },
          complete: () => {
            end('complete');
          },
        },
      );
    });
  }
}

describe.skipIf(skipReason !== undefined)('under injected faults', () => {
  let postgres: OwnPostgres | undefined;
  let redis: OwnRedis | undefined;
  const instances: OwnParley[] = [];
  beforeAll(async () => {
    // The instances run the compiled server, built by the globalSetup (test/support/build-once.ts).
    const buildFailure = inject('buildFailure');
    if (buildFailure !== null) throw new Error(buildFailure);
    postgres = await startOwnPostgres();
    redis = await startOwnRedis();
    const env = {
      DATABASE_URL: postgres.url,
      REDIS_URL: redis.url,
      PARLEY_DOMAIN: 'parley.test',
      PARLEY_TOKEN_SECRET: 'fault suite secret, shared by both instances',
      PARLEY_LOG_LEVEL: 'warn',
      PARLEY_METRICS: 'off',
      // Rate limits out of the way of steady senders and reconnecting subscribers.
      ...RELAXED_RATE_LIMITS_ENV,
    };
    // The first boot migrates; the second finds the schema in place.
    instances.push(await OwnParley.start('A', env));
    instances.push(await OwnParley.start('B', env));
  }, 180_000);
  afterAll(async () => {
    await Promise.all(instances.map((instance) => instance.stop()));
    redis?.destroy();
    postgres?.destroy();
  });

  it('counts a connection lost between the statements of a transaction as the database being unavailable', async () => {
    const url = (postgres as OwnPostgres).url;
    const dataSource = new DataSource({ type: 'postgres', url });
    await dataSource.initialize();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      // Lost before COMMIT, and lost before the transaction's next statement: TypeORM says each
      // its own way, once pg has reported the loss as an event and the query runner is released.
      for (const [next, expected] of [
        ['commit', QueryRunnerAlreadyReleasedError],
        ['statement', QueryRunnerProviderAlreadyReleasedError],
      ] as const) {
        const failure = await dataSource
          .transaction(async (manager) => {
            const [row] = await manager.query<{ pid: number }[]>('SELECT pg_backend_pid() AS pid');
            await admin.query('SELECT pg_terminate_backend($1)', [row?.pid]);
            await eventually(
              () => Promise.resolve(manager.queryRunner?.isReleased === true),
              5_000,
              'query runner released',
            );
            if (next === 'statement') await manager.query('SELECT 1');
          })
          .then(
            () => undefined,
            (error: unknown) => error,
          );
        expect(failure, next).toBeInstanceOf(expected);
        // So the client is told SERVICE_UNAVAILABLE (retryable), not INTERNAL_SERVER_ERROR.
        expect(isDatabaseUnavailable(failure), next).toBe(true);
      }
    } finally {
      await admin.end();
      await dataSource.destroy();
    }
  });

  it('loses no acknowledged message, stores none twice, leaves no gap, and tells clients in typed errors', async () => {
    const [a, b] = instances as [OwnParley, OwnParley];
    const pair: [OwnParley, OwnParley] = [a, b];
    for (const instance of pair) instance.requestTimeoutMs = REQUEST_TIMEOUT_MS;
    const db = postgres as OwnPostgres;
    const bus = redis as OwnRedis;

    // Conversations of two members each: the sender on one instance, the reader on the other.
    const conversations = await Promise.all(
      Array.from({ length: CONVERSATIONS }, async (_, i) => {
        const home = pair[i % 2] as OwnParley;
        const away = pair[(i + 1) % 2] as OwnParley;
        const alice = await ParleyDevice.create(home);
        const bob = await ParleyDevice.create(away);
        await bob.uploadKeyPackages(1);
        const { conversationId, group } = await alice.createConversation();
        dataOf(
          await alice.submit(
            conversationId,
            await group.addMembers(await alice.claim([bob.userId])),
          ),
        );
        group.confirmCommit();
        const joined = await bob.joinFromWelcome();
        return {
          conversationId,
          alice,
          bob,
          bobGroup: joined.group,
          sender: new Sender(`c${i}`, [alice.via(a), alice.via(b)], group, conversationId),
          reader: new Reader(
            [bob.via(a), bob.via(b)],
            pair,
            conversationId,
            joined.commitSeq,
            (i + 1) % 2,
          ),
        };
      }),
    );
    for (const { reader } of conversations) reader.start();
    await sleep(500);
    for (const { sender } of conversations) sender.start();

    const timings: string[] = [];
    const healthy = (instance: OwnParley) => async () => (await instance.health()).status === 200;
    const busBack = (instance: OwnParley) => async () => {
      const { status, body } = await instance.health();
      const events = (body.info as Record<string, { bus?: string }> | undefined)?.events;
      // `degraded` (publishes failed in the last 30 s) is up again: streams are accepted.
      return status === 200 && events?.bus !== undefined && events.bus !== 'down';
    };
    const allHealthy = () =>
      Promise.all(pair.map((i) => eventually(healthy(i), 60_000, `${i.name} healthy`)));
    const allBusUp = () =>
      Promise.all(pair.map((i) => eventually(busBack(i), 60_000, `${i.name} bus up`)));

    await sleep(4_000);

    phase = 'instance kill -9';
    await a.kill();
    await sleep(1_000);
    const restartedIn = await a.start();
    timings.push(`instance A back (healthy) ${restartedIn} ms after respawn`);
    await sleep(2_000);

    phase = 'PostgreSQL kill -9';
    db.kill();
    await sleep(1_000);
    // Reconnecting and catching up while the database is gone meet it too: typed as well.
    for (const { reader } of conversations) reader.bounce();
    await sleep(1_000);
    const pgStarted = Date.now();
    db.start();
    await allHealthy();
    timings.push(`both healthy ${Date.now() - pgStarted} ms after PostgreSQL restart`);
    await sleep(2_000);

    phase = 'PostgreSQL SIGSTOP';
    db.freeze();
    await sleep(1_000);
    for (const { reader } of conversations) reader.bounce();
    await sleep(11_000);
    const thawed = Date.now();
    db.thaw();
    await allHealthy();
    timings.push(`both healthy ${Date.now() - thawed} ms after PostgreSQL SIGCONT`);
    await sleep(2_000);

    phase = 'Redis kill -9';
    bus.kill();
    await sleep(3_000);
    const redisStarted = Date.now();
    await bus.start();
    await allBusUp();
    timings.push(`bus up on both ${Date.now() - redisStarted} ms after Redis restart`);
    await sleep(2_000);

    phase = 'Redis SIGSTOP';
    bus.freeze();
    await sleep(6_000);
    const redisThawed = Date.now();
    bus.thaw();
    await allBusUp();
    timings.push(`bus up on both ${Date.now() - redisThawed} ms after Redis SIGCONT`);

    phase = 'after';
    await sleep(3_000);
    await Promise.all(conversations.map(({ sender }) => sender.stop()));

    // Every reader completes: its live stream plus its catch-ups after each reconnect hold the
    // whole log, with no final read on its behalf.
    const logs = await Promise.all(
      conversations.map(({ bob, conversationId }) => bob.via(b).entries(conversationId)),
    );
    const completeIn = await eventually(
      () =>
        Promise.resolve(
          conversations.every(({ reader }, i) =>
            (logs[i] ?? []).every((entry) => reader.seqs.has(entry.seq)),
          ),
        ),
      30_000,
      'every subscriber complete',
    ).catch((error: unknown) => {
      const missing = conversations.map(
        ({ reader }, i) => (logs[i] ?? []).filter((entry) => !reader.seqs.has(entry.seq)).length,
      );
      throw new Error(`${String(error)}; missing per reader: ${missing.join(', ')}`);
    });
    await Promise.all(conversations.map(({ reader }) => reader.stop()));

    let lost = 0;
    let duplicates = 0;
    let gaps = 0;
    let misplaced = 0;
    for (const [i, { sender, bobGroup }] of conversations.entries()) {
      const log = logs[i] ?? [];
      const bySeq = new Map(log.map((entry) => [entry.seq, entry.message]));
      for (const acked of sender.acked) {
        const stored = bySeq.get(acked.seq);
        if (stored === undefined) lost += 1;
        else if (stored !== acked.message) misplaced += 1;
      }
      duplicates += log.length - new Set(log.map((entry) => entry.message)).size;
      for (let k = 1; k < log.length; k += 1) {
        gaps += Math.max(0, (log[k]?.seq ?? 0) - (log[k - 1]?.seq ?? 0) - 1);
      }
      // What was stored decrypts, in log order, to what was sent.
      const texts: string[] = [];
      for (const entry of log) {
        const processed = await bobGroup.processMessage(Buffer.from(entry.message, 'base64'));
        if (processed.kind === 'application')
          texts.push(Buffer.from(processed.plaintext).toString('utf8'));
      }
      const ackedTexts = new Set(sender.acked.map((acked) => acked.text));
      expect(texts.filter((text) => ackedTexts.has(text))).toEqual(
        sender.acked.map((acked) => acked.text),
      );
    }

    const sends = conversations.flatMap(({ sender }) => sender.sends);
    const stored = logs.reduce((sum, log) => sum + log.length, 0);
    const lines = [
      `fault suite: ${sends.length} sends acknowledged (${stored} entries stored), ` +
        `${sends.reduce((sum, send) => sum + send.attempts - 1, 0)} retries ` +
        `(${sends.filter((send) => send.ambiguous).length} sends retried after no answer), ` +
        `${conversations.reduce((sum, { sender }) => sum + sender.gaveUp, 0)} given up; ` +
        `lost ${lost}, duplicates ${duplicates}, gaps ${gaps}, misplaced ${misplaced}`,
    ];
    const phases = [...new Set(sends.map((send) => send.phase))];
    for (const name of phases) {
      const ms = sends.filter((send) => send.phase === name).map((send) => send.ms);
      const retried = sends.filter((send) => send.phase === name && send.attempts > 1).length;
      lines.push(
        `  ${name}: ${ms.length} sends (${retried} retried), p50 ${quantile(ms, 0.5).toFixed(0)} ms, ` +
          `p99 ${quantile(ms, 0.99).toFixed(0)} ms, max ${quantile(ms, 1).toFixed(0)} ms`,
      );
    }
    const readers = conversations.map(({ reader }) => reader);
    lines.push(
      `  subscribers: ${readers.reduce((s, r) => s + r.live, 0)} entries live, ` +
        `${readers.reduce((s, r) => s + r.caughtUp, 0)} by catch-up, ` +
        `${readers.reduce((s, r) => s + r.outOfOrder, 0)} live out of order, ` +
        `${readers.reduce((s, r) => s + r.connects, 0)} connections, complete ${completeIn} ms after the last send; ` +
        `streams ended: ${readers.map((r) => r.endings.toString()).join(' | ')}`,
      `  GraphQL error codes seen: ${graphqlCodes.toString()}`,
      `  failures without a GraphQL answer: ${transportFailures.toString()}`,
      `  lines logged at level error: ${pair.map((i) => `${i.name} ${i.errorLines.length}`).join(', ')}`,
      `  ${timings.join('; ')}`,
    );
    console.log(lines.join('\n'));

    expect(pair.flatMap((instance) => instance.crashes)).toEqual([]);
    expect({ lost, duplicates, gaps, misplaced }).toEqual({
      lost: 0,
      duplicates: 0,
      gaps: 0,
      misplaced: 0,
    });
    expect(readers.map((reader) => reader.outOfOrder)).toEqual(readers.map(() => 0));
    // Live delivery came back after the last fault: not everything came by catch-up.
    for (const reader of readers) expect(reader.liveByPhase.counts.get('after')).toBeGreaterThan(0);
    expect(conversations.map(({ sender }) => sender.gaveUp)).toEqual(conversations.map(() => 0));
    // Every phase kept sending, and a frozen Redis did not slow sends down.
    for (const name of phases)
      expect(sends.filter((send) => send.phase === name).length).toBeGreaterThan(0);
    const frozen = sends.filter((send) => send.phase === 'Redis SIGSTOP').map((send) => send.ms);
    expect(frozen.length).toBeGreaterThan(10);
    expect(quantile(frozen, 0.99)).toBeLessThan(1_000);
    // Every error a client was given is typed: no INTERNAL_SERVER_ERROR, nothing without a code.
    const codes = [...graphqlCodes.counts.keys()];
    expect(
      codes.filter((code) => code === 'INTERNAL_SERVER_ERROR' || code.startsWith('UNTYPED')),
      pair.flatMap((instance) => instance.errorLines).join('\n'),
    ).toEqual([]);
    // Sockets closed only as expected: 1006 when the instance holding them was killed, 1013 (Try
    // Again Later, which graphql-ws clients retry) when the database could not check the token.
    // Not 4500, an internal error that graphql-ws clients take as fatal and never retry.
    const closes = [...transportFailures.counts.keys()].filter((kind) => kind.startsWith('live:'));
    expect(closes.filter((kind) => !/^live: closed (1006|1013)$/.test(kind))).toEqual([]);
  }, 300_000);
});
