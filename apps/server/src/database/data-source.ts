import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { migrations } from '@parley/migrations';
import { DataSource, type DataSourceOptions } from 'typeorm';
import type { Config } from '../config/config.js';
import { entities } from './entities.js';
import { createPgliteDriver } from './pglite/pglite-driver.js';
import { QueryLogger } from './query-logger.js';

/** A DataSource over embedded PGlite that owns the database and closes it after itself. */
class EmbeddedDataSource extends DataSource {
  constructor(
    options: DataSourceOptions,
    private readonly pglite: PGlite,
  ) {
    super(options);
  }

  override async destroy(): Promise<void> {
    await super.destroy();
    await this.pglite.close();
  }
}

/**
 * The one DataSource definition, for the app and the TypeORM CLI: PostgreSQL when
 * DATABASE_URL is set, otherwise embedded PGlite in PARLEY_DATA_DIR (or in memory).
 */
export async function createDataSource(config: Config): Promise<DataSource> {
  const options = {
    type: 'postgres' as const,
    entities,
    migrations,
    migrationsRun: config.runMigrations,
    migrationsTransactionMode: 'each' as const,
    synchronize: false,
    logger: new QueryLogger(),
    maxQueryExecutionTime: 1000,
  };
  const { database } = config;
  if (database.kind === 'postgres') {
    return new DataSource({ ...options, url: database.url, extra: { max: 20 } });
  }
  if (database.dataDir !== null) mkdirSync(database.dataDir, { recursive: true });
  const pglite = await PGlite.create(database.dataDir ?? undefined);
  // One embedded session: a nested acquisition would wait forever; fail loudly instead.
  return new EmbeddedDataSource(
    { ...options, driver: createPgliteDriver(pglite), connectTimeoutMS: 60_000 },
    pglite,
  );
}
