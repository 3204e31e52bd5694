import { Check, Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/** A Parley user: signed up with a password, or mapped from an app's JWT subject. */
@Entity('users')
@Check('users_has_login', `"username" IS NOT NULL OR "external_subject" IS NOT NULL`)
export class UserEntity {
  @PrimaryColumn('uuid')
  id!: string;

  /** Lower-cased; null for users who come from an app's own identity provider. */
  @Column('text', { unique: true, nullable: true })
  username!: string | null;

  @Column('text', { name: 'password_hash', nullable: true })
  passwordHash!: string | null;

  /** `<issuer> <subject>` of an app JWT. */
  @Column('text', { name: 'external_subject', unique: true, nullable: true })
  externalSubject!: string | null;

  /** Parley's tokens carry the generation they were issued in; signOutEverywhere bumps it. */
  @Column('integer', { name: 'token_generation', default: 0 })
  tokenGeneration!: number;

  /** The last signOutEverywhere: app JWTs issued (`iat`) up to then are refused. */
  @Column('timestamptz', { name: 'tokens_revoked_at', nullable: true })
  tokensRevokedAt!: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
