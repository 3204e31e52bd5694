import { Injectable, Optional } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DataSource } from 'typeorm';

/** The counts pg's Pool (and Parley's PGlite lease) keep. */
interface PoolCounts {
  totalCount: number;
  idleCount: number;
  waitingCount: number;
}

function isPool(value: unknown): value is PoolCounts {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Partial<PoolCounts>).totalCount === 'number' &&
    typeof (value as Partial<PoolCounts>).idleCount === 'number' &&
    typeof (value as Partial<PoolCounts>).waitingCount === 'number'
  );
}

let processRegistry: Registry | undefined;

/**
 * Process-wide metrics (CPU, memory, event-loop lag, GC, handles): one set per process, since
 * prom-client's collectors start observers that are never stopped, and several apps may share a
 * process (tests).
 */
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/**
 * Parley's Prometheus metrics, one registry per app. Recording is a counter increment or a
 * histogram observation on a child looked up by label values: no allocation worth the name on the
 * send path. Gauges of the current state (sockets, subscriptions, pool) are read at scrape time.
 */
@Injectable()
export class Metrics {
  readonly registry = new Registry();

  /** GraphQL operations by type, root field and outcome code (`OK` or the first error's code). */
  readonly graphqlRequests = new Counter({
    name: 'parley_graphql_requests_total',
    help: 'GraphQL operations by type, root field (or "multiple") and outcome code (OK or the first error code)',
    labelNames: ['type', 'operation', 'code'] as const,
    registers: [this.registry],
  });

  /** Time from receiving an operation to its response. */
  readonly graphqlDuration = new Histogram({
    name: 'parley_graphql_request_duration_seconds',
    help: 'Time from parsing a GraphQL operation to sending its response',
    labelNames: ['type', 'operation'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  /** Every error in responses, by operation and code. */
  readonly graphqlErrors = new Counter({
    name: 'parley_graphql_errors_total',
    help: 'Errors in GraphQL responses by root field and extensions.code',
    labelNames: ['operation', 'code'] as const,
    registers: [this.registry],
  });

  /** Requests refused for a rate limit, by what was limited. */
  readonly rateLimitRefusals = new Counter({
    name: 'parley_rate_limit_refusals_total',
    help: 'Requests refused with RATE_LIMITED, by operation (or connection kind)',
    labelNames: ['scope'] as const,
    registers: [this.registry],
  });

  /** Application messages stored (retries of stored bytes excluded). */
  readonly messagesAppended = new Counter({
    name: 'parley_messages_appended_total',
    help: 'Application messages appended to conversation logs (idempotent retries excluded)',
    registers: [this.registry],
  });

  /** Messages per append transaction ("group commit"). */
  readonly appendBatchSize = new Histogram({
    name: 'parley_append_batch_size',
    help: 'Messages per append transaction of one conversation',
    buckets: BATCH_BUCKETS,
    registers: [this.registry],
  });

  /** graphql-ws connections acknowledged and still open on this instance. */
  readonly liveSockets = new Gauge({
    name: 'parley_live_sockets',
    help: 'graphql-ws connections acknowledged and open on this instance',
    registers: [this.registry],
  });

  /** graphql-ws subscriptions running on this instance. */
  readonly liveSubscriptions = new Gauge({
    name: 'parley_live_subscriptions',
    help: 'graphql-ws subscriptions running on this instance',
    registers: [this.registry],
  });

  /** Time to hand one event to the bus, by outcome. */
  readonly busPublishDuration = new Histogram({
    name: 'parley_event_bus_publish_duration_seconds',
    help: 'Time to publish one event on the event bus (in-process or Redis), by outcome',
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  /** Events the bus refused or timed out on. */
  readonly busPublishFailures = new Counter({
    name: 'parley_event_bus_publish_failures_total',
    help: 'Events that could not be published (bus down, timed out or shut down)',
    registers: [this.registry],
  });

  /** How long after its expiry each timed message was deleted by this instance's sweeper. */
  readonly expiryLateness = new Histogram({
    name: 'parley_expired_message_lateness_seconds',
    help: 'Time from a message expiry to its deletion by the sweeper (this instance)',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  private readonly publishOk = this.busPublishDuration.labels('ok');
  private readonly publishFailed = this.busPublishDuration.labels('failed');

  constructor(@Optional() @InjectDataSource() dataSource?: DataSource) {
    if (dataSource !== undefined) this.watchPool(dataSource);
  }

  /** Prometheus text exposition of the process's and this app's metrics. */
  async exposition(): Promise<string> {
    return `${await processMetrics().metrics()}\n${await this.registry.metrics()}`;
  }

  /** The Content-Type of {@link exposition}. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** One batch of `size` messages committed, of which `stored` were new. */
  appended(size: number, stored: number): void {
    this.appendBatchSize.observe(size);
    if (stored > 0) this.messagesAppended.inc(stored);
  }

  /** One bus publish took `seconds` and succeeded or not. */
  published(seconds: number, ok: boolean): void {
    if (ok) {
      this.publishOk.observe(seconds);
    } else {
      this.publishFailed.observe(seconds);
      this.busPublishFailures.inc();
    }
  }

  /** A request refused for a rate limit outside GraphQL responses (a connection, say). */
  rateLimited(scope: string): void {
    this.rateLimitRefusals.inc({ scope });
  }

  /**
   * The bus's own account, read at scrape time: its state (one of up, degraded, down set to 1),
   * the events waiting in this process's outbox and those it could not publish since boot.
   */
  watchBus(read: () => { state: string; queued: number; lost: number }): void {
    const states = ['up', 'degraded', 'down'];
    new Gauge({
      name: 'parley_event_bus_state',
      help: 'Event bus state on this instance: 1 for the current one of up, degraded, down',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const { state } = read();
        for (const each of states) this.set({ state: each }, each === state ? 1 : 0);
      },
    });
    new Gauge({
      name: 'parley_event_bus_queued',
      help: "Events waiting in this process's outbox for the bus",
      registers: [this.registry],
      collect() {
        this.set(read().queued);
      },
    });
    new Counter({
      name: 'parley_event_bus_lost_total',
      help: 'Events this process could not publish (failed, timed out, dropped) since it started',
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(read().lost);
      },
    });
  }

  /** The database pool, read at scrape time: connections open, idle, and callers waiting. */
  private watchPool(dataSource: DataSource): void {
    const pool = (): PoolCounts | undefined => {
      if (!dataSource.isInitialized) return undefined;
      const master = (dataSource.driver as { master?: unknown }).master;
      return isPool(master) ? master : undefined;
    };
    new Gauge({
      name: 'parley_db_pool_connections',
      help: 'Database pool: connections by state (open, idle, in use) and callers waiting for one',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const counts = pool();
        if (counts === undefined) return;
        this.set({ state: 'open' }, counts.totalCount);
        this.set({ state: 'idle' }, counts.idleCount);
        this.set({ state: 'in_use' }, counts.totalCount - counts.idleCount);
        this.set({ state: 'waiting' }, counts.waitingCount);
      },
    });
  }
}
