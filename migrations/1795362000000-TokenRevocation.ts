import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Token revocation: a per-user token generation (Parley's tokens carry it; signOutEverywhere
 * bumps it), the time of the last signOutEverywhere (for app JWTs, which carry no generation),
 * and a denylist of single revoked tokens kept until they would have expired anyway.
 */
export class TokenRevocation1795362000000 implements MigrationInterface {
  name = 'TokenRevocation1795362000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE "users" ADD COLUMN "token_generation" integer NOT NULL DEFAULT 0;
      ALTER TABLE "users" ADD COLUMN "tokens_revoked_at" timestamptz;
      CREATE TABLE "revoked_tokens" (
        "token_id" text NOT NULL,
        "user_id" uuid NOT NULL,
        "expires_at" timestamptz NOT NULL,
        CONSTRAINT "revoked_tokens_pkey" PRIMARY KEY ("token_id"),
        CONSTRAINT "revoked_tokens_user_id_fkey" FOREIGN KEY ("user_id")
          REFERENCES "users" ("id") ON DELETE CASCADE
      );
      CREATE INDEX "revoked_tokens_user_id_idx" ON "revoked_tokens" ("user_id");
      CREATE INDEX "revoked_tokens_expires_at_idx" ON "revoked_tokens" ("expires_at");
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      DROP TABLE "revoked_tokens";
      ALTER TABLE "users" DROP COLUMN "tokens_revoked_at";
      ALTER TABLE "users" DROP COLUMN "token_generation";
    `);
  }
}
