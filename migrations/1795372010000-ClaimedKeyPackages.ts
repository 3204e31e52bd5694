import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Claimed key packages in claim order, for the sweep that deletes them once their retention has
 * passed. Partial: it holds only claimed rows, which the sweep and acknowledged Welcomes keep few.
 */
export class ClaimedKeyPackages1795372010000 implements MigrationInterface {
  name = 'ClaimedKeyPackages1795372010000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE INDEX "key_packages_claimed_at_idx" ON "key_packages" ("claimed_at")
        WHERE "claimed_at" IS NOT NULL AND NOT "last_resort";
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX "key_packages_claimed_at_idx";`);
  }
}
