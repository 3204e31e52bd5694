import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { dataOf, signUpWithDevice } from './support/graphql.js';
import {
  describeE2E,
  freshPostgresDatabase,
  startTestApp,
  type TestApp,
  testDatabase,
} from './support/test-app.js';

describeE2E('database and migrations', () => {
  let app: TestApp;
  let dataSource: DataSource;
  beforeAll(async () => {
    app = await startTestApp();
    dataSource = app.app.get(DataSource);
  });
  afterAll(async () => {
    await app.close();
  });

  it('migrations create exactly what the entities describe', async () => {
    const pending = await dataSource.driver.createSchemaBuilder().log();
    expect(pending.upQueries.map((query) => query.query)).toEqual([]);
  });

  it('every migration goes down and up again cleanly', async () => {
    const applied = dataSource.migrations.length;
    for (let i = 0; i < applied; i++) await dataSource.undoLastMigration({ transaction: 'each' });
    const tables: { count: string }[] = await dataSource.query(
      `SELECT count(*) AS "count" FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'migrations'`,
    );
    expect(tables[0]?.count).toBe('0');
    const ran = await dataSource.runMigrations({ transaction: 'each' });
    expect(ran).toHaveLength(applied);
    expect((await dataSource.driver.createSchemaBuilder().log()).upQueries).toEqual([]);
  });

  it.runIf(testDatabase === 'pglite')(
    'keeps data in the embedded database across restarts',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'parley-data-'));
      try {
        const config = { database: { kind: 'pglite' as const, dataDir: dir } };
        const first = await startTestApp(config);
        const alice = await signUpWithDevice(first, 'persistent');
        await first.close();

        const second = await startTestApp({ ...config, tokenSecret: first.config.tokenSecret });
        try {
          const devices = await second.gql<{ devices: { id: string }[] }>(
            `{ devices { id } }`,
            {},
            alice.token,
          );
          expect(dataOf(devices).devices.map((device) => device.id)).toEqual([alice.deviceId]);
        } finally {
          await second.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it.runIf(testDatabase === 'pglite')(
    'refuses a second server on one embedded data dir, and takes over a dead holder’s lock',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'parley-data-'));
      const database = { database: { kind: 'pglite' as const, dataDir: dir } };
      try {
        const first = await startTestApp(database);
        const ana = await signUpWithDevice(first, 'holder');
        // Two writers on one PGlite directory hand out the same sequence numbers and lose data.
        const second = startTestApp(database);
        await expect(second).rejects.toThrow(dir);
        await expect(second).rejects.toThrow(`process ${process.pid}`);
        const me = await first.gql<{ me: { id: string } }>(`{ me { id } }`, {}, ana.token);
        expect(dataOf(me).me.id).toBe(ana.userId);
        await first.close();

        // A lock left by a process killed with -9 names a PID that is gone: taken over.
        const dead = spawnSync(process.execPath, ['-e', '']).pid;
        const lock = join(dir, 'parley.pid');
        await writeFile(lock, JSON.stringify({ pid: dead, startedAt: new Date().toISOString() }));
        const third = await startTestApp({ ...database, tokenSecret: first.config.tokenSecret });
        try {
          expect(JSON.parse(await readFile(lock, 'utf8'))).toMatchObject({ pid: process.pid });
          const devices = await third.gql<{ devices: { id: string }[] }>(
            `{ devices { id } }`,
            {},
            ana.token,
          );
          expect(dataOf(devices).devices.map((device) => device.id)).toEqual([ana.deviceId]);
        } finally {
          await third.close();
        }
        await expect(readFile(lock)).rejects.toMatchObject({ code: 'ENOENT' });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it.runIf(testDatabase === 'postgres')(
    'boots three instances at once on a fresh database, five rounds',
    async () => {
      const baseUrl = process.env.PARLEY_TEST_DATABASE_URL ?? '';
      for (let round = 0; round < 5; round++) {
        const fresh = await freshPostgresDatabase(baseUrl);
        const database = { database: { kind: 'postgres' as const, url: fresh.url } };
        const booted = await Promise.allSettled([0, 1, 2].map(() => startTestApp(database)));
        const apps = booted.flatMap((result) =>
          result.status === 'fulfilled' ? [result.value] : [],
        );
        try {
          expect(
            booted.flatMap((result) =>
              result.status === 'rejected' ? [String(result.reason)] : [],
            ),
            `round ${round}`,
          ).toEqual([]);
          const [one] = apps;
          if (one !== undefined) await signUpWithDevice(one, `boot${round}`);
        } finally {
          for (const app of apps) await app.app.close();
          await fresh.drop();
        }
      }
    },
  );
});
