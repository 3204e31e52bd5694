import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Conversations with their epoch and roster, the conversation log, and Welcomes. */
export class Conversations1795353900000 implements MigrationInterface {
  name = 'Conversations1795353900000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "conversations" (
        "id" uuid PRIMARY KEY,
        "group_id" bytea NOT NULL CONSTRAINT "conversations_group_id_key" UNIQUE,
        "kind" text NOT NULL,
        "ciphersuite" integer NOT NULL,
        "epoch" bigint NOT NULL,
        "last_seq" bigint NOT NULL,
        "retained_from_seq" bigint NOT NULL,
        "group_info" bytea,
        "created_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "conversations_kind" CHECK ("kind" IN ('GROUP'))
      );
      CREATE TABLE "conversation_members" (
        "conversation_id" uuid NOT NULL,
        "device_id" text NOT NULL,
        "leaf_index" integer NOT NULL,
        "joined_seq" bigint NOT NULL,
        "acked_seq" bigint NOT NULL,
        "leaving" boolean NOT NULL DEFAULT false,
        CONSTRAINT "conversation_members_pkey" PRIMARY KEY ("conversation_id", "device_id"),
        CONSTRAINT "conversation_members_leaf_key" UNIQUE ("conversation_id", "leaf_index"),
        CONSTRAINT "conversation_members_conversation_id_fkey" FOREIGN KEY ("conversation_id")
          REFERENCES "conversations" ("id") ON DELETE CASCADE
      );
      CREATE INDEX "conversation_members_device_id_idx" ON "conversation_members" ("device_id");
      CREATE TABLE "log_entries" (
        "conversation_id" uuid NOT NULL,
        "seq" bigint NOT NULL,
        "kind" text NOT NULL,
        "epoch" bigint NOT NULL,
        "sender_device_id" text NOT NULL,
        "created_at" timestamptz NOT NULL DEFAULT now(),
        "data" bytea NOT NULL,
        CONSTRAINT "log_entries_pkey" PRIMARY KEY ("conversation_id", "seq"),
        CONSTRAINT "log_entries_conversation_id_fkey" FOREIGN KEY ("conversation_id")
          REFERENCES "conversations" ("id") ON DELETE CASCADE,
        CONSTRAINT "log_entries_kind" CHECK ("kind" IN ('COMMIT', 'APPLICATION'))
      );
      CREATE TABLE "welcomes" (
        "id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        "conversation_id" uuid NOT NULL,
        "commit_seq" bigint NOT NULL,
        "epoch" bigint NOT NULL,
        "data" bytea NOT NULL,
        "created_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "welcomes_conversation_id_fkey" FOREIGN KEY ("conversation_id")
          REFERENCES "conversations" ("id") ON DELETE CASCADE
      );
      CREATE TABLE "welcome_recipients" (
        "welcome_id" bigint NOT NULL,
        "device_id" text NOT NULL,
        "key_package_ref" bytea NOT NULL,
        CONSTRAINT "welcome_recipients_pkey" PRIMARY KEY ("welcome_id", "device_id"),
        CONSTRAINT "welcome_recipients_welcome_id_fkey" FOREIGN KEY ("welcome_id")
          REFERENCES "welcomes" ("id") ON DELETE CASCADE,
        CONSTRAINT "welcome_recipients_device_id_fkey" FOREIGN KEY ("device_id")
          REFERENCES "devices" ("id") ON DELETE CASCADE
      );
      CREATE INDEX "welcome_recipients_device_id_idx" ON "welcome_recipients" ("device_id", "welcome_id");
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      DROP TABLE "welcome_recipients";
      DROP TABLE "welcomes";
      DROP TABLE "log_entries";
      DROP TABLE "conversation_members";
      DROP TABLE "conversations";
    `);
  }
}
