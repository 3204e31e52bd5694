import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A digest (SHA-256 of the MLSMessage bytes) on log entries, unique per conversation, so that
 * the same bytes sent twice are stored once. Nullable, and the index covers only filled rows:
 * entries stored before this migration, and any kind that does not deduplicate this way, never
 * block anything.
 */
export class LogEntryDigest1795361000000 implements MigrationInterface {
  name = 'LogEntryDigest1795361000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE "log_entries" ADD "digest" bytea;
      CREATE UNIQUE INDEX "log_entries_digest_key" ON "log_entries" ("conversation_id", "digest")
        WHERE "digest" IS NOT NULL;
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      DROP INDEX "log_entries_digest_key";
      ALTER TABLE "log_entries" DROP COLUMN "digest";
    `);
  }
}
