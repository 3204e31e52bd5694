import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { UserEntity } from '../accounts/user.entity.js';

/** A token revoked by signOut, kept until it would have expired anyway (then purged). */
@Entity('revoked_tokens')
export class RevokedTokenEntity {
  /** The token's `jti`, or the SHA-256 of the token (base64url) when it has none. */
  @PrimaryColumn('text', { name: 'token_id', primaryKeyConstraintName: 'revoked_tokens_pkey' })
  tokenId!: string;

  @Index('revoked_tokens_user_id_idx')
  @Column('uuid', { name: 'user_id' })
  userId!: string;

  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'user_id', foreignKeyConstraintName: 'revoked_tokens_user_id_fkey' })
  user?: UserEntity;

  @Index('revoked_tokens_expires_at_idx')
  @Column('timestamptz', { name: 'expires_at' })
  expiresAt!: Date;
}
