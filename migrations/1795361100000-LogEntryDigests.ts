import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Digests of application messages deleted by retention while their epoch was still within the
 * epoch window, so that sending the same bytes again is still answered with the original entry.
 */
export class LogEntryDigests1795361100000 implements MigrationInterface {
  name = 'LogEntryDigests1795361100000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "log_entry_digests" (
        "conversation_id" uuid NOT NULL,
        "digest" bytea NOT NULL,
        "seq" bigint NOT NULL,
        "epoch" bigint NOT NULL,
        "sender_device_id" text NOT NULL,
        "created_at" timestamptz NOT NULL,
        CONSTRAINT "log_entry_digests_pkey" PRIMARY KEY ("conversation_id", "digest"),
        CONSTRAINT "log_entry_digests_conversation_id_fkey" FOREIGN KEY ("conversation_id")
          REFERENCES "conversations" ("id") ON DELETE CASCADE
      );
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "log_entry_digests";`);
  }
}
