import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Users, devices, key packages, rate-limit windows and server secrets. */
export class Foundation1795352400000 implements MigrationInterface {
  name = 'Foundation1795352400000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "users" (
        "id" uuid PRIMARY KEY,
        "username" text CONSTRAINT "users_username_key" UNIQUE,
        "password_hash" text,
        "external_subject" text CONSTRAINT "users_external_subject_key" UNIQUE,
        "created_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "users_has_login" CHECK ("username" IS NOT NULL OR "external_subject" IS NOT NULL)
      );
      CREATE TABLE "devices" (
        "id" text PRIMARY KEY,
        "user_id" uuid NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
        "name" text NOT NULL,
        "signature_key" bytea,
        "key_package_low_water" integer NOT NULL,
        "created_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "devices_id_hex" CHECK ("id" ~ '^[0-9a-f]{16}$')
      );
      CREATE INDEX "devices_user_id_idx" ON "devices" ("user_id");
      CREATE TABLE "key_packages" (
        "id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        "device_id" text NOT NULL REFERENCES "devices" ("id") ON DELETE CASCADE,
        "ref" bytea NOT NULL CONSTRAINT "key_packages_ref_key" UNIQUE,
        "ciphersuite" integer NOT NULL,
        "data" bytea NOT NULL,
        "not_before" timestamptz NOT NULL,
        "not_after" timestamptz NOT NULL,
        "last_resort" boolean NOT NULL DEFAULT false,
        "claimed_at" timestamptz,
        "claimed_by_device_id" text REFERENCES "devices" ("id") ON DELETE SET NULL,
        "created_at" timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX "key_packages_available_idx" ON "key_packages" ("device_id", "id")
        WHERE "claimed_at" IS NULL AND NOT "last_resort";
      CREATE UNIQUE INDEX "key_packages_last_resort_idx" ON "key_packages" ("device_id")
        WHERE "last_resort";
      CREATE TABLE "rate_limit_windows" (
        "key" text PRIMARY KEY,
        "window_start" timestamptz NOT NULL,
        "hits" integer NOT NULL
      );
      CREATE TABLE "server_secrets" (
        "name" text PRIMARY KEY,
        "value" text NOT NULL,
        "created_at" timestamptz NOT NULL DEFAULT now()
      );
    `);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      DROP TABLE "server_secrets";
      DROP TABLE "rate_limit_windows";
      DROP TABLE "key_packages";
      DROP TABLE "devices";
      DROP TABLE "users";
    `);
  }
}
