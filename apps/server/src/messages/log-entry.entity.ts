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

/** Kinds of conversation log entries: commits, application messages, message-timer changes. */
export type LogEntryKind = 'COMMIT' | 'APPLICATION' | 'TIMER';

/** One entry of a conversation's log, stored once whatever the group size. */
@Entity('log_entries')
@Check('log_entries_kind', `"kind" IN ('COMMIT', 'APPLICATION', 'TIMER')`)
@Check(
  'log_entries_timer',
  `("kind" = 'TIMER') = ("timer_seconds" IS NOT NULL) AND ("expires_at" IS NULL OR "kind" = 'APPLICATION')`,
)
@Index('log_entries_expires_at_idx', ['expiresAt'], { where: `"expires_at" IS NOT NULL` })
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

  /**
   * When the sweeper deletes this application message: storage time plus the conversation's
   * message timer at its seq. Null when no timer was on (and for commits and TIMER entries, which
   * the timer never deletes).
   */
  @Column('timestamptz', { name: 'expires_at', nullable: true })
  expiresAt!: Date | null;

  /** TIMER entries: the timer they set, in seconds (0 = off); null for other kinds. */
  @Column('integer', { name: 'timer_seconds', nullable: true })
  timerSeconds!: number | null;
}
