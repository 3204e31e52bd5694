import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Calls: one running call per conversation (a partial unique index), its participants with their
 * last heartbeat (indexed for the sweep that drops the silent ones), and the device index the
 * removal of a device from its calls uses.
 */
export class Calls1795390000000 implements MigrationInterface {
  name = 'Calls1795390000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "calls" (
        "id" uuid NOT NULL,
        "conversation_id" uuid NOT NULL,
        "media" text NOT NULL,
        "started_by_device_id" text NOT NULL,
        "started_at" timestamptz NOT NULL DEFAULT now(),
        "ended_at" timestamptz,
        CONSTRAINT "calls_pkey" PRIMARY KEY ("id"),
        CONSTRAINT "calls_media" CHECK ("media" IN ('AUDIO', 'VIDEO')),
        CONSTRAINT "calls_conversation_id_fkey" FOREIGN KEY ("conversation_id")
          REFERENCES "conversations" ("id") ON DELETE CASCADE
      );
      CREATE UNIQUE INDEX "calls_running_key" ON "calls" ("conversation_id") WHERE "ended_at" IS NULL;
      CREATE TABLE "call_participants" (
        "call_id" uuid NOT NULL,
        "device_id" text NOT NULL,
        "joined_at" timestamptz NOT NULL DEFAULT now(),
        "last_seen_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "call_participants_pkey" PRIMARY KEY ("call_id", "device_id"),
        CONSTRAINT "call_participants_call_id_fkey" FOREIGN KEY ("call_id")
          REFERENCES "calls" ("id") ON DELETE CASCADE
      );
      CREATE INDEX "call_participants_last_seen_idx" ON "call_participants" ("last_seen_at");
      CREATE INDEX "call_participants_device_idx" ON "call_participants" ("device_id");
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "call_participants"; DROP TABLE "calls";`);
  }
}
