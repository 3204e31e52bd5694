import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { migrations } from '@parley/migrations';
import { DataSource, type DataSourceOptions } from 'typeorm';
import type { Config } from '../config/config.js';
import { entities } from './entities.js';
import { lockDataDir } from './pglite/data-dir-lock.js';
import { createPgliteDriver } from './pglite/pglite-driver.js';
import { QueryLogger } from './query-logger.js';

// Key of the session-level advisory lock that migrations at boot run under ("parley" in ASCII).
const MIGRATIONS_LOCK = '123563833845113';

/** A DataSource that applies pending migrations once it is initialised, if asked to. */
class ParleyDataSource extends DataSource {
  constructor(
    options: DataSourceOptions,
    private readonly migrateAtBoot: boolean,
  ) {
    super({ ...options, migrationsRun: false });
  }

  override async initialize(): Promise<this> {
    try {
      await super.initialize();
      if (this.migrateAtBoot) await this.migrate();
    } catch (error) {
      // Whatever was opened is closed again (an embedded database also gives its data dir back).
      await this.destroy().catch(() => undefined);
      throw error;
    }
    return this;
  }

  /**
   * Under a PostgreSQL advisory lock, so instances booting together on a fresh database take
   * turns: the first applies the migrations, the others find none pending (TypeORM alone races to
   * create the same tables and types).
   */
  protected async migrate(): Promise<void> {
    const runner = this.createQueryRunner();
    try {
      await runner.query('SELECT pg_advisory_lock($1)', [MIGRATIONS_LOCK]);
      try {
        await this.runMigrations({ transaction: 'each' });
      } finally {
        await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATIONS_LOCK]);
      }
    } finally {
      await runner.release();
    }
  }
}

/**
 * A DataSource over embedded PGlite that owns the database, and the data dir's lock, and closes
 * both after itself.
 */
class EmbeddedDataSource extends ParleyDataSource {
  constructor(
    options: DataSourceOptions,
    migrateAtBoot: boolean,
    private readonly pglite: PGlite,
    private readonly unlock: () => Promise<void>,
  ) {
    super(options, migrateAtBoot);
  }

  /** The data dir's lock already keeps other processes out, and PGlite has one session to lease. */
  protected override async migrate(): Promise<void> {
    await this.runMigrations({ transaction: 'each' });
  }

  override async destroy(): Promise<void> {
    if (this.isInitialized) await super.destroy();
    await this.pglite.close();
    await this.unlock();
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
    migrationsTransactionMode: 'each' as const,
    synchronize: false,
    logger: new QueryLogger(),
    maxQueryExecutionTime: 1000,
  };
  const { database } = config;
  if (database.kind === 'postgres') {
    return new ParleyDataSource(
      {
        ...options,
        url: database.url,
        // An unreachable or frozen server fails requests in seconds (SERVICE_UNAVAILABLE), not
        // never; pg-pool replaces broken clients, so service resumes when PostgreSQL is back.
        extra: {
          max: 20,
          connectionTimeoutMillis: 5_000,
          query_timeout: 10_000,
          keepAlive: true,
          // Statements asked for before the ones ahead of them answered go out at once, and the
          // server runs them back to back (pipelinedTransaction): without it, pg holds each one
          // until the thread has read the previous answer, and warns that it will stop queueing.
          pipeline: true,
        },
      },
      config.runMigrations,
    );
  }
  let unlock = () => Promise.resolve();
  if (database.dataDir !== null) {
    mkdirSync(database.dataDir, { recursive: true });
    unlock = await lockDataDir(database.dataDir);
  }
  let pglite: PGlite;
  try {
    pglite = await PGlite.create(database.dataDir ?? undefined);
  } catch (error) {
    await unlock();
    throw error;
  }
  // One embedded session: a nested acquisition would wait forever; fail loudly instead.
  return new EmbeddedDataSource(
    { ...options, driver: createPgliteDriver(pglite), connectTimeoutMS: 60_000 },
    config.runMigrations,
    pglite,
    unlock,
  );
}
