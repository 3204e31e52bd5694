import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Direct (1:1) conversations, one per unordered pair of users (a unique key on the ordered pair),
 * and each user's role in a conversation. Existing conversations get their users' roles: the
 * creator's user (the sender of the log's oldest entry, else the device at leaf 0) is ADMIN.
 */
export class DirectConversationsRoles1795370000000 implements MigrationInterface {
  name = 'DirectConversationsRoles1795370000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE "conversations" DROP CONSTRAINT "conversations_kind";
      ALTER TABLE "conversations"
        ADD CONSTRAINT "conversations_kind" CHECK ("kind" IN ('GROUP', 'DIRECT'));
      ALTER TABLE "conversations" ADD COLUMN "direct_user_low" uuid;
      ALTER TABLE "conversations" ADD COLUMN "direct_user_high" uuid;
      ALTER TABLE "conversations" ADD CONSTRAINT "conversations_direct_pair" CHECK (("kind" = 'DIRECT') = ("direct_user_low" IS NOT NULL AND "direct_user_high" IS NOT NULL) AND ("direct_user_low" IS NULL OR "direct_user_low" < "direct_user_high"));
      CREATE UNIQUE INDEX "conversations_direct_pair_key"
        ON "conversations" ("direct_user_low", "direct_user_high") WHERE "kind" = 'DIRECT';
      CREATE TABLE "conversation_roles" (
        "conversation_id" uuid NOT NULL,
        "user_id" uuid NOT NULL,
        "role" text NOT NULL,
        "joined_seq" bigint NOT NULL,
        CONSTRAINT "conversation_roles_pkey" PRIMARY KEY ("conversation_id", "user_id"),
        CONSTRAINT "conversation_roles_role" CHECK ("role" IN ('ADMIN', 'MEMBER')),
        CONSTRAINT "conversation_roles_conversation_id_fkey" FOREIGN KEY ("conversation_id")
          REFERENCES "conversations" ("id") ON DELETE CASCADE
      );
      INSERT INTO "conversation_roles" ("conversation_id", "user_id", "role", "joined_seq")
        SELECT m."conversation_id", d."user_id", 'MEMBER', min(m."joined_seq")
          FROM "conversation_members" m JOIN "devices" d ON d."id" = m."device_id"
          GROUP BY m."conversation_id", d."user_id";
      UPDATE "conversation_roles" r SET "role" = 'ADMIN'
        WHERE r."user_id" = (
          SELECT d."user_id" FROM "conversation_members" m JOIN "devices" d ON d."id" = m."device_id"
           WHERE m."conversation_id" = r."conversation_id"
           ORDER BY m."joined_seq", m."leaf_index" LIMIT 1);
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      DROP TABLE "conversation_roles";
      DELETE FROM "conversations" WHERE "kind" = 'DIRECT';
      DROP INDEX "conversations_direct_pair_key";
      ALTER TABLE "conversations" DROP CONSTRAINT "conversations_direct_pair";
      ALTER TABLE "conversations" DROP COLUMN "direct_user_high";
      ALTER TABLE "conversations" DROP COLUMN "direct_user_low";
      ALTER TABLE "conversations" DROP CONSTRAINT "conversations_kind";
      ALTER TABLE "conversations" ADD CONSTRAINT "conversations_kind" CHECK ("kind" IN ('GROUP'));
    `);
  }
}
