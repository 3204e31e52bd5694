import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What each accepted commit bundle returned, one row per conversation epoch, so that the same
 * bundle submitted again (a retry whose response was lost, on any instance) gets that answer.
 */
export class CommitResults1795360000000 implements MigrationInterface {
  name = 'CommitResults1795360000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "commit_results" (
        "conversation_id" uuid NOT NULL,
        "epoch" bigint NOT NULL,
        "seq" bigint NOT NULL,
        "sender_device_id" text NOT NULL,
        "bundle_digest" bytea NOT NULL,
        "added_device_ids" text[] NOT NULL,
        "removed_device_ids" text[] NOT NULL,
        CONSTRAINT "commit_results_pkey" PRIMARY KEY ("conversation_id", "epoch"),
        CONSTRAINT "commit_results_conversation_id_fkey" FOREIGN KEY ("conversation_id")
          REFERENCES "conversations" ("id") ON DELETE CASCADE
      );
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "commit_results";`);
  }
}
