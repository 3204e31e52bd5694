import { Column, Entity, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { ConversationEntity } from './conversation.entity.js';

/**
 * The answer an accepted commit bundle got, kept per conversation epoch (at most one commit wins
 * each) for as long as the conversation exists: a byte-identical bundle submitted again gets it
 * back instead of STALE_EPOCH.
 */
@Entity('commit_results')
export class CommitResultEntity {
  @PrimaryColumn('uuid', {
    name: 'conversation_id',
    primaryKeyConstraintName: 'commit_results_pkey',
  })
  conversationId!: string;

  @ManyToOne(() => ConversationEntity, { onDelete: 'CASCADE' })
  @JoinColumn({
    name: 'conversation_id',
    foreignKeyConstraintName: 'commit_results_conversation_id_fkey',
  })
  conversation?: ConversationEntity;

  /** The epoch the commit was made in (the new epoch is this plus one). */
  @PrimaryColumn('bigint', { primaryKeyConstraintName: 'commit_results_pkey' })
  epoch!: string;

  /** Log entry of the commit. */
  @Column('bigint')
  seq!: string;

  /** No foreign key: a retry is answered only to the device that sent the bundle. */
  @Column('text', { name: 'sender_device_id' })
  senderDeviceId!: string;

  /** SHA-256 over the bundle's parts (see commit-bundle.checks.ts bundleDigest). */
  @Column('bytea', { name: 'bundle_digest' })
  bundleDigest!: Buffer;

  @Column('text', { name: 'added_device_ids', array: true })
  addedDeviceIds!: string[];

  @Column('text', { name: 'removed_device_ids', array: true })
  removedDeviceIds!: string[];
}
