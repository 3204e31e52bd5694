import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Disappearing messages: a timer per conversation, TIMER log entries that change it, and the
 * expiry of each application message stored while it is on, with the index the sweeper deletes
 * by (partial: only expiring rows, so a log without timers costs it nothing).
 */
export class MessageTimers1795380000000 implements MigrationInterface {
  name = 'MessageTimers1795380000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE "conversations"
        ADD COLUMN "message_timer_seconds" integer NOT NULL DEFAULT 0,
        ADD CONSTRAINT "conversations_message_timer"
          CHECK ("message_timer_seconds" = 0 OR "message_timer_seconds" BETWEEN 5 AND 86400);
      ALTER TABLE "log_entries"
        DROP CONSTRAINT "log_entries_kind",
        ADD CONSTRAINT "log_entries_kind" CHECK ("kind" IN ('COMMIT', 'APPLICATION', 'TIMER')),
        ADD COLUMN "expires_at" timestamptz,
        ADD COLUMN "timer_seconds" integer,
        ADD CONSTRAINT "log_entries_timer"
          CHECK (("kind" = 'TIMER') = ("timer_seconds" IS NOT NULL)
             AND ("expires_at" IS NULL OR "kind" = 'APPLICATION'));
      CREATE INDEX "log_entries_expires_at_idx" ON "log_entries" ("expires_at")
        WHERE "expires_at" IS NOT NULL;
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      DROP INDEX "log_entries_expires_at_idx";
      DELETE FROM "log_entries" WHERE "kind" = 'TIMER';
      ALTER TABLE "log_entries"
        DROP CONSTRAINT "log_entries_timer",
        DROP COLUMN "timer_seconds",
        DROP COLUMN "expires_at",
        DROP CONSTRAINT "log_entries_kind",
        ADD CONSTRAINT "log_entries_kind" CHECK ("kind" IN ('COMMIT', 'APPLICATION'));
      ALTER TABLE "conversations"
        DROP CONSTRAINT "conversations_message_timer",
        DROP COLUMN "message_timer_seconds";
    `);
  }
}
