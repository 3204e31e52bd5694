import { type DataSource, QueryFailedError } from 'typeorm';

/** What runs one SQL statement and answers its rows: an EntityManager, a pipelined transaction. */
export interface Sql {
  query<T = unknown>(sql: string, parameters?: unknown[]): Promise<T>;
}

/** A transaction whose statements are queued on its connection as soon as they are asked for. */
export interface PipelinedTransaction extends Sql {
  /** Queues COMMIT behind the statements asked for so far; resolves once it is done. */
  commit(): Promise<void>;
}

/** The driver's connection as `pg` and Parley's PGlite pool both give it. */
interface DriverConnection {
  query(sql: string, parameters?: unknown[]): Promise<{ rows: unknown }>;
  /** pg's protocol connection; its stream is the TCP socket (PGlite's pool has neither). */
  connection?: { stream?: Partial<Corkable> };
}

interface Corkable {
  cork(): void;
  uncork(): void;
}

/** The socket under a `pg` client, to cork; undefined for PGlite, which runs in-process. */
function socketOf(connection: DriverConnection): Corkable | undefined {
  const stream = connection.connection?.stream;
  return typeof stream?.cork === 'function' && typeof stream.uncork === 'function'
    ? (stream as Corkable)
    : undefined;
}

/**
 * Runs `work` in a transaction whose statements do not wait for the thread between them. Both
 * of Parley's pools run `pg` in pipeline mode (data-source.ts, the PGlite driver): statements
 * are written once the synchronous stretch that asked for them ends, together, and the server
 * runs what it received back to back. BEGIN, a row lock and the reads under it, asked for
 * together, then cost one wait for a busy event loop to read their answers instead of one each;
 * on a thread that fans events out, those waits, not the database, are what a short
 * transaction's time is made of. (TypeORM's `transaction()` awaits every statement, BEGIN and
 * COMMIT included.)
 *
 * Order is the order of `query` calls, and the server starts each statement once the one before
 * it ended, so a read queued behind a `FOR UPDATE` sees what was committed before the lock was
 * granted. Every statement's result waits for BEGIN's: work that writes only after awaiting a
 * result never writes outside the transaction. A failed statement fails the ones behind it, and
 * the COMMIT behind it rolls back. If `work` throws, or returns without committing, the
 * transaction is rolled back. Errors are TypeORM's `QueryFailedError`, as from a manager.
 */
export async function pipelinedTransaction<T>(
  dataSource: DataSource,
  work: (transaction: PipelinedTransaction) => Promise<T>,
): Promise<T> {
  const runner = dataSource.createQueryRunner();
  // The last statement queued: the connection goes back to the pool only once it has answered.
  let last: Promise<unknown> = Promise.resolve();
  try {
    const connection = (await runner.connect()) as DriverConnection;
    // pg writes each statement with a syscall of its own. Those asked for in one synchronous
    // stretch leave in one: the socket is held from the first of them until the stretch ends
    // (after `work`'s first part, after COMMIT or ROLLBACK), and never past the microtasks
    // already queued — a statement is not kept back while the thread does other work.
    const socket = socketOf(connection);
    let holding = false;
    const letGo = () => {
      if (!holding) return;
      holding = false;
      socket?.uncork();
    };
    const send = <R>(sql: string, parameters?: unknown[]): Promise<R> => {
      if (socket !== undefined && !holding) {
        holding = true;
        socket.cork();
        queueMicrotask(letGo);
      }
      const sent = connection.query(sql, parameters).then(
        (result) => result.rows as R,
        (error: unknown) => {
          throw new QueryFailedError(sql, parameters, error as Error);
        },
      );
      last = sent.catch(() => null);
      return sent;
    };
    const begun = send('BEGIN');
    // An object, not a local: TypeScript cannot see the closure below setting it.
    const state = { ended: false };
    const transaction: PipelinedTransaction = {
      query: <R>(sql: string, parameters?: unknown[]) =>
        Promise.all([begun, send<R>(sql, parameters)]).then(([, rows]) => rows),
      commit: () => {
        state.ended = true;
        const committed = send('COMMIT');
        letGo();
        return Promise.all([begun, committed]).then(() => undefined);
      },
    };
    const end = (): Promise<unknown> => {
      const rolledBack = send('ROLLBACK');
      letGo();
      return rolledBack;
    };
    try {
      const working = work(transaction);
      letGo();
      const result = await working;
      if (!state.ended) await end();
      return result;
    } catch (error) {
      // Once COMMIT is queued it ends the transaction either way: PostgreSQL answers a COMMIT of
      // a transaction that failed by rolling it back.
      if (!state.ended) await end().catch(() => null);
      throw error;
    }
  } finally {
    await last;
    await runner.release();
  }
}
