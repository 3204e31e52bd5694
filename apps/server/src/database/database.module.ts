import { type DynamicModule, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { Config } from '../config/config.js';
import { createDataSource } from './data-source.js';
import { entities } from './entities.js';

/** The TypeORM DataSource (migrated at boot unless switched off) and every entity's repository. */
@Module({})
export class DatabaseModule {
  static forRoot(config: Config): DynamicModule {
    return {
      module: DatabaseModule,
      global: true,
      imports: [
        TypeOrmModule.forRootAsync({
          // Fail fast with the driver's own message rather than retrying for half a minute.
          useFactory: () => ({ retryAttempts: 0 }),
          dataSourceFactory: () => createDataSource(config),
        }),
        TypeOrmModule.forFeature(entities),
      ],
      exports: [TypeOrmModule],
    };
  }
}
