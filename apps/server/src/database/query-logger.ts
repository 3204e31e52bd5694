import { Logger } from '@nestjs/common';
import type { Logger as TypeOrmLogger } from 'typeorm';

/**
 * TypeORM's logger without parameters: bound values are ciphertext, key packages, password
 * hashes and tokens, none of which may reach a log. SQL text is parameterised, so it is safe.
 */
export class QueryLogger implements TypeOrmLogger {
  private readonly logger = new Logger('Database');

  logQuery(): void {
    // Every query is too much for a log; failures and slow ones are reported below.
  }

  logQueryError(error: string | Error, query: string): void {
    const code =
      typeof error === 'object' && 'code' in error && typeof error.code === 'string'
        ? ` [${error.code}]`
        : '';
    this.logger.warn(`${typeof error === 'string' ? error : error.message}${code} in: ${query}`);
  }

  logQuerySlow(time: number, query: string): void {
    this.logger.warn(`slow query (${time} ms): ${query}`);
  }

  logSchemaBuild(): void {
    // Parley never synchronises the schema; migrations own it.
  }

  logMigration(message: string): void {
    this.logger.log(message);
  }

  log(level: 'log' | 'info' | 'warn', message: unknown): void {
    if (level === 'warn') this.logger.warn(String(message));
    else this.logger.log(String(message));
  }
}
