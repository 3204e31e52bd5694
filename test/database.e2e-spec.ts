import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { dataOf, signUpWithDevice } from './support/graphql.js';
import { describeE2E, startTestApp, type TestApp, testDatabase } from './support/test-app.js';

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
});
