import {
  Check,
  Column,
  CreateDateColumn,
  Entity,
  Index,
  JoinColumn,
  ManyToOne,
  PrimaryColumn,
} from 'typeorm';
import { ConversationEntity } from '../conversations/conversation.entity.js';

/** Kinds of conversation log entries; system entries (timer changes, …) come later. */
export type LogEntryKind = 'COMMIT' | 'APPLICATION';

/** One entry of a conversation's log, stored once whatever the group size. */
@Entity('log_entries')
@Check('log_entries_kind', `"kind" IN ('COMMIT', 'APPLICATION')`)
@Index('log_entries_digest_key', ['conversationId', 'digest'], {
  unique: true,
  where: `"digest" IS NOT NULL`,
})
export class LogEntryEntity {
  @PrimaryColumn('uuid', { name: 'conversation_id', primaryKeyConstraintName: 'log_entries_pkey' })
  conversationId!: string;

  @ManyToOne(() => ConversationEntity, { onDelete: 'CASCADE' })
  @JoinColumn({
    name: 'conversation_id',
    foreignKeyConstraintName: 'log_entries_conversation_id_fkey',
  })
  conversation?: ConversationEntity;

  @PrimaryColumn('bigint', { primaryKeyConstraintName: 'log_entries_pkey' })
  seq!: string;

  @Column('text')
  kind!: LogEntryKind;

  @Column('bigint')
  epoch!: string;

  /** No foreign key: the history outlives a deleted device. */
  @Column('text', { name: 'sender_device_id' })
  senderDeviceId!: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  /** The MLSMessage bytes: a PublicMessage commit or a PrivateMessage. */
  @Column('bytea')
  data!: Buffer;

  /**
   * SHA-256 of `data` for application messages: the same bytes are stored once per
   * conversation (the appender looks them up under the conversation's row lock; the unique
   * index is the safety net). Null for entries that are not deduplicated this way.
   */
  @Column('bytea', { nullable: true })
  digest!: Buffer | null;
}
