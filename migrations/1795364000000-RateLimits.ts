import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Rate limits move onto rate-limiter-flexible: its PostgreSQL store's table (the layout the
 * library creates itself, made here so that no instance runs DDL at request time; an index on
 * `expire` for its purge of expired rows), and the hand-written fixed windows go.
 */
export class RateLimits1795364000000 implements MigrationInterface {
  name = 'RateLimits1795364000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "rate_limits" (
        "key" varchar(255) NOT NULL,
        "points" integer NOT NULL DEFAULT 0,
        "expire" bigint,
        CONSTRAINT "rate_limits_pkey" PRIMARY KEY ("key")
      );
      CREATE INDEX "rate_limits_expire_idx" ON "rate_limits" ("expire");
      DROP TABLE "rate_limit_windows";
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "rate_limit_windows" (
        "key" text PRIMARY KEY,
        "window_start" timestamptz NOT NULL,
        "hits" integer NOT NULL
      );
      DROP TABLE "rate_limits";
    `);
  }
}
