/**
 * A `pg`-compatible driver module that lets TypeORM's `postgres` driver run on embedded PGlite
 * with real transaction isolation.
 *
 * PGlite is ONE Postgres backend: one session, one transaction at a time. TypeORM assumes a pool of
 * independent connections, one per query runner. Handing the same session to several query runners
 * at once (what the `typeorm-pglite` package does) interleaves their statements inside whatever
 * transaction happens to be open: `SELECT … FOR UPDATE` locks nothing against a "concurrent"
 * runner that is in fact the same session, a ROLLBACK undoes other runners' work, and a COMMIT
 * commits it. So this pool owns exactly one client and LEASES it to one query runner at a time;
 * every other `connect()` waits, FIFO, until the holder calls `release()`. With one session,
 * leases serialise transactions, which is the strongest isolation there is.
 *
 * The protocol work is not re-implemented here: each lease is a real `pg.Client` speaking the wire
 * protocol to PGlite through PGlite's own `node-postgres` connection shim. That way parameter
 * binding, simple vs extended protocol (multi-statement SQL without parameters works exactly as on
 * a server), type parsing (int8 and numeric as strings, bytea as Buffer, timestamptz as Date, json
 * as objects, `pg.types` overrides) and errors (`code` = SQLSTATE) are those of `pg` itself, so
 * the application sees one behaviour on PGlite and on PostgreSQL.
 */
import { EventEmitter } from 'node:events';
import type { PGlite } from '@electric-sql/pglite';
import { PglitePgConnection } from '@electric-sql/pglite/node-postgres';
import pg from 'pg';
import type { ClientConfig, QueryConfig, QueryResult, QueryResultRow } from 'pg';

/** Options TypeORM (or a caller) passes to `new Pool(...)`; only the lease timeout means anything here. */
export interface PglitePoolConfig {
  /**
   * How long a `connect()` waits for the lease before failing with pg-pool's
   * "timeout exceeded when trying to connect"; 0 or absent waits forever, as in pg. TypeORM fills
   * it from `connectTimeoutMS`. Set it to turn a nested-acquisition deadlock into an error.
   */
  readonly connectionTimeoutMillis?: number | undefined;
  /** host, user, password, max, ssl… are accepted for pg compatibility and ignored: one embedded session. */
  readonly [option: string]: unknown;
}

/** Ends a lease; a truthy argument says the client is broken (pg-pool semantics) and it is replaced. */
export type PgliteReleaseFn = (err?: Error | boolean) => void;

/** pg-pool's `connect` callback shape, which TypeORM uses. */
export type PgliteConnectCallback = (
  err: Error | undefined,
  client: PglitePoolClient | undefined,
  release: PgliteReleaseFn,
) => void;

/** pg's `query` callback shape. */
export type PgliteQueryCallback<R extends QueryResultRow = QueryResultRow> = (
  err: Error | null,
  result: QueryResult<R> | undefined,
) => void;

/** The leased view of the single PGlite session; it stops working (queries fail) once released. */
export interface PglitePoolClient extends EventEmitter {
  /** pg's `Client.query` (promise and callback forms); fails after `release()`. */
  query<R extends QueryResultRow = QueryResultRow>(
    text: string | QueryConfig<unknown[]>,
    values?: unknown[],
  ): Promise<QueryResult<R>>;
  query<R extends QueryResultRow = QueryResultRow>(
    text: string | QueryConfig<unknown[]>,
    callback: PgliteQueryCallback<R>,
  ): void;
  query<R extends QueryResultRow = QueryResultRow>(
    text: string | QueryConfig<unknown[]>,
    values: unknown[] | undefined,
    callback: PgliteQueryCallback<R>,
  ): void;
  /** Gives the session back to the pool; calling it twice throws, as in pg-pool. */
  readonly release: PgliteReleaseFn;
}

/** The `pg`-shaped module TypeORM loads instead of `pg` when given as the `driver` option. */
export interface PgliteDriver {
  /** Constructed by TypeORM once per DataSource initialisation (and ended on `destroy()`). */
  readonly Pool: new (config?: PglitePoolConfig) => PglitePool;
  /** pg's own defaults, so TypeORM's `parseInt8` option acts exactly as it does on pg. */
  readonly defaults: typeof pg.defaults;
  /** pg's own type-parser registry: one set of parsers for PGlite and PostgreSQL. */
  readonly types: typeof pg.types;
}

/**
 * Builds the TypeORM `driver` for one PGlite instance:
 * `new DataSource({ type: 'postgres', driver: createPgliteDriver(pglite), ... })`.
 *
 * OWNERSHIP: the caller owns `pglite`. `pool.end()` (TypeORM's `dataSource.destroy()`) releases the
 * pool's client but does NOT close the database, so a DataSource can be destroyed and initialised
 * again over the same instance; close it yourself with `await pglite.close()` AFTER
 * `dataSource.destroy()`.
 *
 * DEADLOCK WARNING: there is one session, so a second acquisition from a flow that already holds
 * the lease waits for itself forever. Inside `dataSource.transaction(async (manager) => …)` (or
 * while holding a QueryRunner) use ONLY that `manager` / query runner, never `dataSource.query`,
 * `dataSource.getRepository(...)`, an injected repository or a second `createQueryRunner()`.
 * Setting TypeORM's `connectTimeoutMS` turns such a hang into a "timeout exceeded" error.
 *
 * Do not query `pglite` directly while the DataSource is in use: a lease holds PGlite's own query
 * lock, so direct `pglite.query()`/`exec()`/`close()` calls wait for the current lease instead of
 * landing inside someone's transaction, but PGlite's `transaction()` between leases is unprotected.
 */
export function createPgliteDriver(pglite: PGlite): PgliteDriver {
  class BoundPglitePool extends PglitePool {
    constructor(config?: PglitePoolConfig) {
      super(pglite, config);
    }
  }
  return Object.freeze({ Pool: BoundPglitePool, defaults: pg.defaults, types: pg.types });
}

interface Waiter {
  readonly resolve: (client: PglitePoolClient) => void;
  readonly reject: (err: Error) => void;
  timer?: NodeJS.Timeout;
}

type AnyArgsFunction = (...args: unknown[]) => unknown;

const RELEASED_MESSAGE = 'PGlite client was released to the pool and can no longer be queried';

/**
 * A pg-pool-shaped pool over ONE PGlite session: a FIFO lease with exactly one holder at a time.
 * Prefer {@link createPgliteDriver}; construct it directly only to use the session without TypeORM.
 */
export class PglitePool extends EventEmitter {
  readonly #pglite: PGlite;
  readonly #connectionTimeoutMillis: number;
  readonly #waiters: Waiter[] = [];
  readonly #endWaiters: (() => void)[] = [];
  #client: pg.Client | undefined;
  #clientBroken = false;
  #lease: LeasedClient | undefined;
  // True from asking PGlite's lock for the next lease until someone holds it: stops a second grant.
  #acquiring = false;
  #ending = false;

  /** `config` is pg's pool config; everything but `connectionTimeoutMillis` is ignored. */
  constructor(pglite: PGlite, config: PglitePoolConfig = {}) {
    super();
    this.#pglite = pglite;
    const timeout = config.connectionTimeoutMillis;
    this.#connectionTimeoutMillis = typeof timeout === 'number' && timeout > 0 ? timeout : 0;
  }

  /** Number of `connect()` calls waiting for the lease (pg-pool's name). */
  get waitingCount(): number {
    return this.#waiters.length;
  }

  /** 1 while the pool has a connected client, else 0 (pg-pool's name). */
  get totalCount(): number {
    return this.#client ? 1 : 0;
  }

  /** 1 while the client exists and nobody holds the lease, else 0 (pg-pool's name). */
  get idleCount(): number {
    return this.#client && !this.#lease ? 1 : 0;
  }

  /**
   * Waits (FIFO) for the single session and leases it to the caller until `release()`.
   *
   * DEADLOCK WARNING: calling this again from a flow that already holds a lease never resolves
   * (unless `connectionTimeoutMillis` is set): use the lease (or the transaction's EntityManager)
   * you already have.
   */
  connect(): Promise<PglitePoolClient>;
  connect(callback: PgliteConnectCallback): void;
  connect(callback?: PgliteConnectCallback): Promise<PglitePoolClient> | undefined {
    const leased = this.#enqueue();
    if (!callback) return leased;
    leased.then(
      (client) => {
        callback(undefined, client, client.release);
      },
      (err: unknown) => {
        callback(toError(err), undefined, () => undefined);
      },
    );
    return undefined;
  }

  /** pg's `pool.query` (promise form): lease, run one query, release. */
  async query<R extends QueryResultRow = QueryResultRow>(
    text: string | QueryConfig<unknown[]>,
    values?: unknown[],
  ): Promise<QueryResult<R>> {
    const client = await this.connect();
    try {
      return await client.query<R>(text, values);
    } finally {
      client.release();
    }
  }

  /**
   * Fails every waiting `connect()`, waits for the current holder to release, and disconnects the
   * pool's client. It does NOT close the PGlite instance: its creator owns it (see createPgliteDriver).
   */
  end(): Promise<void>;
  end(callback: (err?: Error) => void): void;
  end(callback?: (err?: Error) => void): Promise<void> | undefined {
    const ended = this.#end();
    if (!callback) return ended;
    ended.then(
      () => {
        callback();
      },
      (err: unknown) => {
        callback(toError(err));
      },
    );
    return undefined;
  }

  async #end(): Promise<void> {
    if (this.#ending) throw new Error('Called end on pool more than once');
    this.#ending = true;
    for (const waiter of this.#waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error('PGlite pool was ended before the connection became available'));
    }
    // pg-pool also waits for checked-out clients; TypeORM releases its query runners first.
    await new Promise<void>((resolve) => {
      this.#endWaiters.push(resolve);
      this.#settleEnd();
    });
    await this.#discardClient();
  }

  #enqueue(): Promise<PglitePoolClient> {
    if (this.#ending) {
      return Promise.reject(new Error('Cannot use a pool after calling end on the pool'));
    }
    return new Promise<PglitePoolClient>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      if (this.#connectionTimeoutMillis > 0) {
        waiter.timer = setTimeout(() => {
          const index = this.#waiters.indexOf(waiter);
          if (index === -1) return;
          this.#waiters.splice(index, 1);
          reject(new Error('timeout exceeded when trying to connect'));
        }, this.#connectionTimeoutMillis);
      }
      this.#waiters.push(waiter);
      this.#pump();
    });
  }

  // Starts the next lease if the session is free. Waiters are promises, so nothing spins.
  #pump(): void {
    if (this.#lease || this.#acquiring || this.#waiters.length === 0) return;
    this.#acquiring = true;
    // Holding PGlite's own query lock for the whole lease keeps direct pglite.query()/exec()/close()
    // (and pools of other DataSources over the same instance) out of the holder's transaction.
    this.#pglite
      .runExclusive(
        () =>
          new Promise<void>((unlock) => {
            void this.#grant(unlock);
          }),
      )
      .catch((err: unknown) => {
        this.#acquiring = false;
        this.#waiters.shift()?.reject(toError(err));
        this.#settleEnd();
        this.#pump();
      });
  }

  async #grant(unlock: () => void): Promise<void> {
    // The head is chosen only now: waiters that timed out or were ended meanwhile are gone.
    const waiter = this.#waiters.shift();
    if (!waiter) {
      this.#acquiring = false;
      unlock();
      this.#settleEnd();
      return;
    }
    clearTimeout(waiter.timer);
    try {
      if (this.#pglite.closed) throw new Error('PGlite instance is closed');
      const client = await this.#ensureClient();
      const lease: LeasedClient = new LeasedClient(client, (err) => {
        void this.#release(lease, err, unlock);
      });
      this.#lease = lease;
      this.#acquiring = false;
      waiter.resolve(lease);
    } catch (err) {
      this.#acquiring = false;
      unlock();
      waiter.reject(toError(err));
      this.#settleEnd();
      this.#pump();
    }
  }

  async #release(lease: LeasedClient, err: Error | boolean | undefined, unlock: () => void) {
    try {
      // Queries the holder fired without awaiting still run in its session; let them finish first.
      await lease.drained();
      if (err) this.#clientBroken = true;
      if (this.#clientBroken) await this.#discardClient();
      if (this.#inTransaction()) {
        // pg would hand the next borrower a connection still inside this transaction; on a server a
        // destroyed connection's transaction dies with it. PGlite's session outlives the client, so
        // the transaction must be ended here or the next holder would run inside it.
        const client = await this.#ensureClient();
        await client.query('ROLLBACK');
        if (!err) {
          this.#emitError(
            new Error('A PGlite lease was released inside an open transaction; it was rolled back'),
          );
        }
      }
    } catch (cleanupErr) {
      await this.#discardClient();
      this.#emitError(toError(cleanupErr));
    } finally {
      this.#lease = undefined;
      unlock();
      this.#settleEnd();
      this.#pump();
    }
  }

  async #ensureClient(): Promise<pg.Client> {
    if (this.#client && !this.#clientBroken) return this.#client;
    await this.#discardClient();
    // pg accepts a ready-made `connection` (undocumented in @types/pg; PGlite's shim relies on it).
    const config: ClientConfig & { connection: PglitePgConnection } = {
      connection: new PglitePgConnection({ pglite: this.#pglite }),
      // As on PostgreSQL (data-source.ts): statements asked for together are sent together.
      pipeline: true,
    };
    const client = new pg.Client(config);
    client.on('error', (err) => {
      this.#onClientError(client, err);
    });
    // Events belong to whoever holds the lease now (TypeORM's logNotifications listens per client).
    client.on('notice', (notice) => this.#lease?.forward('notice', notice));
    client.on('notification', (message) => this.#lease?.forward('notification', message));
    await client.connect();
    this.#client = client;
    return client;
  }

  #onClientError(client: pg.Client, err: Error): void {
    if (client !== this.#client) return;
    this.#clientBroken = true;
    // TypeORM's query runner listens for this and answers with release(err).
    if (this.#lease && this.#lease.listenerCount('error') > 0) this.#lease.emit('error', err);
    else this.#emitError(err);
  }

  async #discardClient(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#clientBroken = false;
    // Ending the client only drops PGlite's connection shim; the database stays open.
    if (client) await client.end().catch(() => undefined);
  }

  #inTransaction(): boolean {
    try {
      return !this.#pglite.closed && this.#pglite.isInTransaction();
    } catch {
      // A PGlite that died mid-way has no transaction left to leak.
      return false;
    }
  }

  #emitError(err: Error): void {
    // An 'error' event without a listener would throw out of the release path; warn instead.
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(err);
  }

  #settleEnd(): void {
    if (!this.#ending || this.#lease || this.#acquiring) return;
    for (const resolve of this.#endWaiters.splice(0)) resolve();
  }
}

// One lease of the pool's client. A fresh object per lease, so a holder that kept a reference past
// release() cannot run statements inside the next holder's transaction, and listeners it added
// die with the lease instead of piling up on the long-lived client.
class LeasedClient extends EventEmitter implements PglitePoolClient {
  readonly release: PgliteReleaseFn;
  #client: pg.Client | undefined;
  #inFlight = 0;
  #onDrained: (() => void)[] = [];

  constructor(client: pg.Client, onRelease: (err: Error | boolean | undefined) => void) {
    super();
    this.#client = client;
    // An arrow property: TypeORM calls the release function it got from connect() unbound.
    this.release = (err) => {
      if (!this.#client) {
        throw new Error('Release called on client which has already been released to the pool.');
      }
      this.#client = undefined;
      onRelease(err);
    };
  }

  query<R extends QueryResultRow = QueryResultRow>(
    text: string | QueryConfig<unknown[]>,
    values?: unknown[],
  ): Promise<QueryResult<R>>;
  query<R extends QueryResultRow = QueryResultRow>(
    text: string | QueryConfig<unknown[]>,
    callback: PgliteQueryCallback<R>,
  ): void;
  query<R extends QueryResultRow = QueryResultRow>(
    text: string | QueryConfig<unknown[]>,
    values: unknown[] | undefined,
    callback: PgliteQueryCallback<R>,
  ): void;
  query(...args: unknown[]): unknown {
    const last = args[args.length - 1];
    const callback = typeof last === 'function' ? (last as AnyArgsFunction) : undefined;
    const client = this.#client;
    if (!client) {
      const err = new Error(RELEASED_MESSAGE);
      if (!callback) return Promise.reject(err);
      process.nextTick(() => callback(err, undefined));
      return undefined;
    }
    const done = this.#track();
    // Forward the caller's arguments untouched so pg picks the protocol exactly as on a server.
    const forward = client.query.bind(client) as unknown as AnyArgsFunction;
    if (callback) {
      args[args.length - 1] = (...results: unknown[]) => {
        done();
        callback(...results);
      };
      forward(...args);
      return undefined;
    }
    const result = forward(...args);
    if (result instanceof Promise) result.then(done, done);
    else if (result instanceof EventEmitter) {
      // A Submittable (e.g. a query stream) is finished when it ends, fails or closes.
      for (const event of ['end', 'error', 'close']) result.once(event, done);
    } else done();
    return result;
  }

  /** Resolves once every query this lease started has settled. */
  drained(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#onDrained.push(resolve));
  }

  forward(event: 'notice' | 'notification', payload: unknown): void {
    this.emit(event, payload);
  }

  #track(): () => void {
    this.#inFlight += 1;
    let settled = false;
    return () => {
      if (settled) return;
      settled = true;
      this.#inFlight -= 1;
      if (this.#inFlight === 0) for (const resolve of this.#onDrained.splice(0)) resolve();
    };
  }
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
