import { Column, Entity, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { ConversationEntity } from '../conversations/conversation.entity.js';

/**
 * What retention keeps of an application message it deleted while the message's epoch was still
 * within the epoch window: its digest and place in the log, never its bytes. A replay of those
 * bytes then still gets the original entry rather than a new one; once the epoch leaves the
 * window the row goes, as such bytes are refused anyway.
 */
@Entity('log_entry_digests')
export class LogEntryDigestEntity {
  @PrimaryColumn('uuid', {
    name: 'conversation_id',
    primaryKeyConstraintName: 'log_entry_digests_pkey',
  })
  conversationId!: string;

  @ManyToOne(() => ConversationEntity, { onDelete: 'CASCADE' })
  @JoinColumn({
    name: 'conversation_id',
    foreignKeyConstraintName: 'log_entry_digests_conversation_id_fkey',
  })
  conversation?: ConversationEntity;

  /** SHA-256 of the deleted entry's bytes. */
  @PrimaryColumn('bytea', { primaryKeyConstraintName: 'log_entry_digests_pkey' })
  digest!: Buffer;

  @Column('bigint')
  seq!: string;

  @Column('bigint')
  epoch!: string;

  @Column('text', { name: 'sender_device_id' })
  senderDeviceId!: string;

  /** When the entry was stored (not when it was deleted). */
  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;
}
