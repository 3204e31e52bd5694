import { Socket } from 'node:net';
import { DataSource, QueryFailedError } from 'typeorm';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { isUniqueViolation } from '../apps/server/src/database/errors.js';
import { pipelinedTransaction } from '../apps/server/src/database/pipelined-transaction.js';
import { describeE2E, startTestApp, type TestApp, testDatabase } from './support/test-app.js';

// The appender's transaction sends its statements without waiting for the thread between them:
// these are the properties it relies on, on the database the suite runs against.
describeE2E('pipelinedTransaction', () => {
  let app: TestApp;
  let dataSource: DataSource;
  beforeAll(async () => {
    app = await startTestApp();
    dataSource = app.app.get(DataSource);
    await dataSource.query(`CREATE TABLE "pipeline_probe" ("name" text PRIMARY KEY)`);
    await dataSource.query(`CREATE TABLE "pipeline_lock" ("id" int PRIMARY KEY)`);
    await dataSource.query(`INSERT INTO "pipeline_lock" VALUES (1)`);
  });
  afterAll(async () => {
    await dataSource.query(`DROP TABLE "pipeline_probe", "pipeline_lock"`);
    await app.close();
  });
  beforeEach(async () => {
    await dataSource.query(`DELETE FROM "pipeline_probe"`);
  });

  const names = async () =>
    (
      await dataSource.query<{ name: string }[]>(
        `SELECT "name" FROM "pipeline_probe" ORDER BY "name"`,
      )
    ).map((row) => row.name);

  it('answers statements asked for together, in order, and commits what was queued before COMMIT', async () => {
    const answers = await pipelinedTransaction(dataSource, async (sql) => {
      const [first, second] = await Promise.all([
        sql.query<{ n: number }[]>('SELECT 1 AS n'),
        sql.query<{ n: number }[]>('SELECT 2 AS n'),
      ]);
      await Promise.all([
        sql.query(`INSERT INTO "pipeline_probe" VALUES ('a'), ('b')`),
        sql.commit(),
      ]);
      return [first[0]?.n, second[0]?.n];
    });
    expect(answers).toEqual([1, 2]);
    expect(await names()).toEqual(['a', 'b']);
  });

  it('rolls back when the work throws or returns without committing', async () => {
    await expect(
      pipelinedTransaction(dataSource, async (sql) => {
        await sql.query(`INSERT INTO "pipeline_probe" VALUES ('thrown')`);
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    await pipelinedTransaction(dataSource, async (sql) => {
      await sql.query(`INSERT INTO "pipeline_probe" VALUES ('uncommitted')`);
    });
    expect(await names()).toEqual([]);
  });

  it('turns the COMMIT behind a failed statement into a rollback, with a typed error', async () => {
    await dataSource.query(`INSERT INTO "pipeline_probe" VALUES ('taken')`);
    const failed = await pipelinedTransaction(dataSource, (sql) =>
      Promise.all([
        sql.query(`INSERT INTO "pipeline_probe" VALUES ('fresh')`),
        sql.query(`INSERT INTO "pipeline_probe" VALUES ('taken')`),
        sql.commit(),
      ]),
    ).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(QueryFailedError);
    expect(isUniqueViolation(failed)).toBe(true);
    expect(await names()).toEqual(['taken']);
  });

  it('gives every connection back, whatever happened (more transactions than the pool holds)', async () => {
    for (let i = 0; i < 40; i++) {
      await pipelinedTransaction(dataSource, async (sql) => {
        if (i % 2 === 0) throw new Error('again');
        await Promise.all([sql.query(`SELECT 1`), sql.commit()]);
      }).catch(() => null);
    }
    expect(await dataSource.query(`SELECT 1 AS "one"`)).toEqual([{ one: 1 }]);
  });

  // PGlite runs on this thread, so nothing of it runs while the thread is blocked.
  it.runIf(testDatabase === 'postgres')(
    'writes the statements asked for together at once: the server runs them while the thread is busy',
    async () => {
      const blockMs = 1_000;
      const { ranAt, blockEnded } = await pipelinedTransaction(dataSource, async (sql) => {
        const asked = Promise.all([
          sql.query<{ at: Date }[]>('SELECT clock_timestamp() AS "at"'),
          sql.query<{ at: Date }[]>('SELECT clock_timestamp() AS "at"'),
        ]);
        // The thread then busy with other work (a microtask later, as a fan-out would be):
        // without pipelining, each statement would leave only after the thread read the answer
        // to the one before it (BEGIN's first), so after the block.
        await Promise.resolve();
        const until = Date.now() + blockMs;
        while (Date.now() < until) {
          // Busy on purpose.
        }
        const blockEnded = Date.now();
        const answers = await asked;
        await sql.commit();
        return { ranAt: answers.map(([row]) => row?.at.getTime() ?? NaN), blockEnded };
      });
      // Same machine, same clock: both ran while this thread was still busy.
      for (const at of ranAt) expect(at).toBeLessThan(blockEnded - blockMs / 2);
    },
  );

  // PGlite runs in-process: there is no socket to write to.
  it.runIf(testDatabase === 'postgres')(
    'hands the statements asked for together to the kernel in one write',
    async () => {
      // Every write to a TCP socket while the transaction runs, by socket. pg writes each
      // statement with a write of its own (Parse, Bind, Describe, Execute, Sync in one writev).
      const writes = new Map<Socket, string[]>();
      const record = (socket: Socket, chunks: unknown[]) => {
        const text = chunks.map((chunk) => String(chunk)).join('');
        writes.set(socket, [...(writes.get(socket) ?? []), text]);
      };
      type WriteV = (
        chunks: { chunk: unknown }[],
        callback: (error?: Error | null) => void,
      ) => void;
      type Write = (
        chunk: unknown,
        encoding: string,
        callback: (error?: Error | null) => void,
      ) => void;
      const socketProto = Socket.prototype as unknown as { _writev: WriteV; _write: Write };
      const { _writev: writev, _write: write } = socketProto;
      socketProto._writev = function (this: Socket, chunks, callback) {
        record(
          this,
          chunks.map(({ chunk }) => chunk),
        );
        writev.call(this, chunks, callback);
      };
      socketProto._write = function (this: Socket, chunk, encoding, callback) {
        record(this, [chunk]);
        write.call(this, chunk, encoding, callback);
      };
      try {
        await pipelinedTransaction(dataSource, async (sql) => {
          await Promise.all([
            sql.query(`SELECT * FROM "pipeline_lock" WHERE "id" = 1 FOR UPDATE`),
            sql.query(`SELECT count(*) FROM "pipeline_probe" WHERE "name" = $1`, ['corked']),
            sql.query(`SELECT 'corked' AS "marker"`),
          ]);
          await Promise.all([
            sql.query(`INSERT INTO "pipeline_probe" VALUES ($1)`, ['corked']),
            sql.commit(),
          ]);
        });
      } finally {
        socketProto._writev = writev;
        socketProto._write = write;
      }
      const ours = [...writes.values()].find((texts) =>
        texts.some((text) => text.includes(`'corked' AS "marker"`)),
      );
      // BEGIN, the lock and both reads; then the insert and COMMIT.
      expect(ours?.length).toBe(2);
      expect(ours?.[0]).toContain('BEGIN');
      expect(ours?.[1]).toContain('COMMIT');
      expect(await names()).toEqual(['corked']);
    },
  );

  // PGlite is one session: its transactions take turns, so none ever waits for a row lock.
  it.runIf(testDatabase === 'postgres')(
    'a read queued behind FOR UPDATE sees what the lock holder committed before granting it',
    async () => {
      let release = (): void => undefined;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      let locked = (): void => undefined;
      const isLocked = new Promise<void>((resolve) => {
        locked = resolve;
      });
      const holder = dataSource.transaction(async (manager) => {
        await manager.query(`SELECT * FROM "pipeline_lock" WHERE "id" = 1 FOR UPDATE`);
        locked();
        await held;
        await manager.query(`INSERT INTO "pipeline_probe" VALUES ('written under the lock')`);
      });
      await isLocked;
      const waiter = pipelinedTransaction(dataSource, async (sql) => {
        const [, seen] = await Promise.all([
          sql.query(`SELECT * FROM "pipeline_lock" WHERE "id" = 1 FOR UPDATE`),
          sql.query<{ name: string }[]>(`SELECT "name" FROM "pipeline_probe"`),
        ]);
        await sql.commit();
        return seen.map((row) => row.name);
      });
      // Let the waiter's statements reach the database and block on the lock first.
      await new Promise((resolve) => setTimeout(resolve, 200));
      release();
      await holder;
      expect(await waiter).toEqual(['written under the lock']);
    },
  );
});
