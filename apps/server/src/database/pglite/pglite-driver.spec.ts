/*
 * Why Parley has its own PGlite driver instead of the `typeorm-pglite` package:
 *
 * PGlite is a single Postgres session. `typeorm-pglite` hands that one session to every TypeORM
 * query runner at once, so "concurrent" transactions are really statements interleaved inside one
 * transaction: `SELECT … FOR UPDATE` cannot block a runner that is the same session (50 concurrent
 * locked increments end at 1), one runner's ROLLBACK undoes the others' work, and its neighbour's
 * COMMIT commits a write that was meant to roll back. On PostgreSQL, each runner has its own
 * connection and none of that happens, so code that is correct on the server silently corrupts
 * data on the embedded database.
 *
 * `createPgliteDriver` instead leases the session to one query runner at a time (FIFO); the others
 * wait in `connect()`. These specs prove the isolation against a real TypeORM DataSource, and that
 * the values and errors look like `pg`'s.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import {
  Column,
  DataSource,
  Entity,
  PrimaryGeneratedColumn,
  QueryFailedError,
  Unique,
  type MigrationInterface,
  type QueryRunner,
} from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgliteDriver, PglitePool, type PglitePoolClient } from './pglite-driver.js';

@Entity('notes')
@Unique('UQ_notes_ref', ['ref'])
class Note {
  @PrimaryGeneratedColumn({ type: 'bigint' })
  id!: string;

  @Column({ type: 'uuid' })
  ref!: string;

  @Column({ type: 'bytea' })
  payload!: Buffer;

  @Column({ type: 'timestamptz' })
  at!: Date;

  @Column({ type: 'jsonb' })
  meta!: { tags: string[] };

  @Column({ type: 'boolean', default: false })
  pinned!: boolean;

  @Column({ type: 'numeric', precision: 10, scale: 2 })
  amount!: string;
}

// Migrations often send several statements in one string; PGlite's `query()` alone would refuse.
class CreateWidgets1700000000000 implements MigrationInterface {
  name = 'CreateWidgets1700000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE widgets (id int PRIMARY KEY, label text NOT NULL);
      INSERT INTO widgets VALUES (1, 'a');
      INSERT INTO widgets VALUES (2, 'b');
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query('DROP TABLE widgets');
  }
}

function dataSourceOn(pglite: PGlite, extra: { connectTimeoutMS?: number } = {}): DataSource {
  return new DataSource({
    type: 'postgres',
    driver: createPgliteDriver(pglite),
    entities: [Note],
    migrations: [CreateWidgets1700000000000],
    synchronize: true,
    ...extra,
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// A promise plus the function that settles it: lets a test hold a transaction open on purpose.
function gate(): { opened: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

describe('createPgliteDriver with TypeORM', () => {
  let pglite: PGlite;
  let ds: DataSource;

  beforeAll(async () => {
    pglite = await PGlite.create();
    ds = dataSourceOn(pglite);
    await ds.initialize();
    await ds.query(`
      CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL);
      INSERT INTO counter VALUES (1, 0);
      CREATE TABLE items (name text PRIMARY KEY);
    `);
  });

  afterAll(async () => {
    await ds.destroy();
    await pglite.close();
  });

  it('serialises 50 concurrent read-lock-increment transactions: the counter ends at 50', async () => {
    await Promise.all(
      Array.from({ length: 50 }, () =>
        ds.transaction(async (manager) => {
          const [row] = await manager.query<{ n: number }[]>(
            'SELECT n FROM counter WHERE id = 1 FOR UPDATE',
          );
          // Yield so that, were sessions shared, other transactions would run in between.
          await sleep(0);
          // Writing the value read (not n + 1) also catches lost updates, not only lost locks.
          await manager.query('UPDATE counter SET n = $1 WHERE id = 1', [(row?.n ?? NaN) + 1]);
        }),
      ),
    );
    expect(await ds.query('SELECT n FROM counter WHERE id = 1')).toEqual([{ n: 50 }]);
  });

  it('leaves no row from a rolled-back insert while other transactions commit concurrently', async () => {
    const outcomes = await Promise.allSettled([
      ds.transaction(async (manager) => {
        await manager.query('INSERT INTO items (name) VALUES ($1)', ['doomed']);
        await sleep(5);
        throw new Error('abort on purpose');
      }),
      ...Array.from({ length: 10 }, (_, i) =>
        ds.transaction(async (manager) => {
          await manager.query('INSERT INTO items (name) VALUES ($1)', [`kept-${i}`]);
        }),
      ),
    ]);
    expect(outcomes[0]).toMatchObject({ status: 'rejected' });
    expect(outcomes.slice(1).every((o) => o.status === 'fulfilled')).toBe(true);
    const names = await ds.query<{ name: string }[]>('SELECT name FROM items ORDER BY name');
    expect(names.map((r) => r.name)).toEqual(Array.from({ length: 10 }, (_, i) => `kept-${i}`));
  });

  it('never lets another transaction or query see uncommitted writes', async () => {
    const inserted = gate();
    const finish = gate();
    const writer = ds.transaction(async (manager) => {
      await manager.query('INSERT INTO items (name) VALUES ($1)', ['uncommitted']);
      inserted.open();
      await finish.opened;
      throw new Error('roll back the write');
    });
    await inserted.opened;

    let readerDone = false;
    const reader = ds
      .transaction((manager) =>
        manager.query<{ count: string }[]>("SELECT count(*) FROM items WHERE name = 'uncommitted'"),
      )
      .finally(() => {
        readerDone = true;
      });
    const autocommitRead = ds.query<{ count: string }[]>(
      "SELECT count(*) FROM items WHERE name = 'uncommitted'",
    );
    await sleep(50);
    // Both readers wait for the lease rather than reading the writer's session state.
    expect(readerDone).toBe(false);

    finish.open();
    await expect(writer).rejects.toThrow('roll back the write');
    expect(await reader).toEqual([{ count: '0' }]);
    expect(await autocommitRead).toEqual([{ count: '0' }]);
  });

  it('returns values as pg does: int8/count/numeric as strings, bytea Buffer, timestamptz Date', async () => {
    const repo = ds.getRepository(Note);
    const at = new Date('2024-05-06T07:08:09.123Z');
    const saved = await repo.save(
      repo.create({
        ref: '6f1c1a2e-8d53-4a37-9b6c-0b6c0d6f1e11',
        payload: Buffer.from([0, 1, 2, 255]),
        at,
        meta: { tags: ['a', 'b'] },
        amount: '12.50',
      }),
    );
    expect(saved.id).toBe('1');

    const note = await repo.findOneByOrFail({ id: saved.id });
    expect(note.id).toBe('1');
    expect(Buffer.isBuffer(note.payload)).toBe(true);
    expect([...note.payload]).toEqual([0, 1, 2, 255]);
    expect(note.at).toBeInstanceOf(Date);
    expect(note.at.toISOString()).toBe(at.toISOString());
    expect(note.meta).toEqual({ tags: ['a', 'b'] });
    expect(note.pinned).toBe(false);
    expect(note.amount).toBe('12.50');
    expect(note.ref).toBe('6f1c1a2e-8d53-4a37-9b6c-0b6c0d6f1e11');

    const [counts] = await ds.query<Record<string, unknown>[]>(
      'SELECT count(*) AS c, 9007199254740993::int8 AS big, 1.10::numeric AS num FROM notes',
    );
    expect(counts).toEqual({ c: '1', big: '9007199254740993', num: '1.10' });
  });

  it('reports affected rows for UPDATE and DELETE', async () => {
    await ds.query("INSERT INTO items (name) VALUES ('u1'), ('u2'), ('u3')");
    const updated = await ds
      .createQueryBuilder()
      .update('items')
      .set({ name: () => "name || '!'" })
      .where("name LIKE 'u%'")
      .execute();
    expect(updated.affected).toBe(3);
    const deleted = await ds
      .createQueryBuilder()
      .delete()
      .from('items')
      .where("name LIKE 'u%!'")
      .execute();
    expect(deleted.affected).toBe(3);
  });

  it('surfaces a unique violation as a QueryFailedError with SQLSTATE 23505', async () => {
    const repo = ds.getRepository(Note);
    const duplicate = repo.insert({
      ref: '6f1c1a2e-8d53-4a37-9b6c-0b6c0d6f1e11',
      payload: Buffer.alloc(0),
      at: new Date(),
      meta: { tags: [] },
      amount: '0',
    });
    const err: unknown = await duplicate.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueryFailedError);
    const driverError: unknown = (err as QueryFailedError).driverError;
    expect(driverError).toMatchObject({ code: '23505', constraint: 'UQ_notes_ref' });
    // The session is still usable afterwards.
    expect(await ds.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('runs multi-statement SQL in one query, as migrations do (up and down)', async () => {
    const ran = await ds.runMigrations();
    expect(ran.map((m) => m.name)).toEqual(['CreateWidgets1700000000000']);
    expect(await ds.query('SELECT id, label FROM widgets ORDER BY id')).toEqual([
      { id: 1, label: 'a' },
      { id: 2, label: 'b' },
    ]);
    await ds.undoLastMigration();
    expect(await ds.query("SELECT to_regclass('widgets') AS t")).toEqual([{ t: null }]);
  });
});

describe('PglitePool leasing', () => {
  let pglite: PGlite;

  beforeAll(async () => {
    pglite = await PGlite.create();
  });

  afterAll(async () => {
    await pglite.close();
  });

  it('hands the session out FIFO, one holder at a time', async () => {
    const pool = new PglitePool(pglite);
    const first = await pool.connect();
    const order: number[] = [];
    const waiting = Array.from({ length: 5 }, (_, i) =>
      pool.connect().then((client) => {
        order.push(i);
        client.release();
      }),
    );
    await sleep(20);
    expect(pool.waitingCount).toBe(5);
    expect(order).toEqual([]);
    first.release();
    await Promise.all(waiting);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    await pool.end();
  });

  it('refuses queries and a second release on a lease that was given back', async () => {
    const pool = new PglitePool(pglite);
    const client = await pool.connect();
    client.release();
    await expect(client.query('SELECT 1')).rejects.toThrow('released');
    expect(() => {
      client.release();
    }).toThrow('already been released');
    await pool.end();
  });

  it('rolls back a transaction left open by a holder before the next lease, and says so', async () => {
    await pglite.exec('CREATE TABLE leaked (v int)');
    const pool = new PglitePool(pglite);
    const warnings: Error[] = [];
    pool.on('error', (err: Error) => warnings.push(err));

    const careless = await pool.connect();
    await careless.query('BEGIN');
    await careless.query('INSERT INTO leaked VALUES (1)');
    careless.release();

    const next = await pool.connect();
    expect((await next.query('SELECT count(*) FROM leaked')).rows).toEqual([{ count: '0' }]);
    next.release();

    // An aborted transaction ("current transaction is aborted…") must not poison the next holder.
    const failed = await pool.connect();
    await failed.query('BEGIN');
    await expect(failed.query('SELECT 1/0')).rejects.toMatchObject({ code: '22012' });
    failed.release();
    const healthy = await pool.connect();
    expect((await healthy.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    healthy.release();

    expect(warnings.map((e) => e.message)).toEqual([
      'A PGlite lease was released inside an open transaction; it was rolled back',
      'A PGlite lease was released inside an open transaction; it was rolled back',
    ]);
    await pool.end();
  });

  it('replaces the client on release(err) and still rolls back its open transaction', async () => {
    const pool = new PglitePool(pglite);
    const broken = await pool.connect();
    await broken.query('BEGIN');
    await broken.query('INSERT INTO leaked VALUES (2)');
    broken.release(new Error('connection considered broken'));

    const next = await pool.connect();
    expect(next).not.toBe(broken);
    expect((await next.query('SELECT count(*) FROM leaked')).rows).toEqual([{ count: '0' }]);
    next.release();
    await pool.end();
  });

  it('fails waiting connects when the pool ends, and later connects too', async () => {
    const pool = new PglitePool(pglite);
    const holder = await pool.connect();
    const waiter = pool.connect();
    const ended = pool.end();
    await expect(waiter).rejects.toThrow('ended');
    await expect(pool.connect()).rejects.toThrow('after calling end');
    holder.release();
    await ended;
    // The pool does not own the database: it is still open for its creator.
    expect(pglite.closed).toBe(false);
  });

  it('times out a waiting connect when connectionTimeoutMillis is set', async () => {
    const pool = new PglitePool(pglite, { connectionTimeoutMillis: 50 });
    const holder = await pool.connect();
    await expect(pool.connect()).rejects.toThrow('timeout exceeded when trying to connect');
    expect(pool.waitingCount).toBe(0);
    holder.release();
    const after: PglitePoolClient = await pool.connect();
    after.release();
    await pool.end();
  });

  it('makes direct pglite queries wait for the current lease instead of joining its transaction', async () => {
    const pool = new PglitePool(pglite);
    const holder = await pool.connect();
    await holder.query('BEGIN');
    await holder.query('INSERT INTO leaked VALUES (3)');
    let directDone = false;
    const direct = pglite
      .query<{ count: number }>('SELECT count(*)::int AS count FROM leaked')
      .finally(() => {
        directDone = true;
      });
    await sleep(30);
    expect(directDone).toBe(false);
    await holder.query('ROLLBACK');
    holder.release();
    expect((await direct).rows).toEqual([{ count: 0 }]);
    await pool.end();
  });

  it('times out (rather than hanging) a nested acquisition inside a transaction', async () => {
    const ds = dataSourceOn(pglite, { connectTimeoutMS: 100 });
    await ds.initialize();
    // The documented misuse: dataSource.query inside ds.transaction waits for its own lease.
    const misuse = ds.transaction(async () => {
      await ds.query('SELECT 1');
    });
    await expect(misuse).rejects.toThrow('timeout exceeded when trying to connect');
    expect(await ds.query('SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
    await ds.destroy();
    expect(pglite.closed).toBe(false);
  });
});

describe('PGlite persistence', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parley-pglite-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps data written through the driver across close and reopen', async () => {
    const first = await PGlite.create(dir);
    const ds1 = dataSourceOn(first);
    await ds1.initialize();
    await ds1.transaction(async (manager) => {
      await manager.getRepository(Note).save({
        ref: '0b6c0d6f-1e11-4a37-9b6c-6f1c1a2e8d53',
        payload: Buffer.from('persisted'),
        at: new Date('2020-01-01T00:00:00Z'),
        meta: { tags: ['disk'] },
        amount: '1.00',
      });
    });
    await ds1.destroy();
    await first.close();

    const second = await PGlite.create(dir);
    const ds2 = dataSourceOn(second);
    await ds2.initialize();
    const notes = await ds2.getRepository(Note).find();
    expect(notes).toHaveLength(1);
    expect(notes[0]?.payload.toString()).toBe('persisted');
    expect(notes[0]?.meta).toEqual({ tags: ['disk'] });
    await ds2.destroy();
    await second.close();
  });
});
