import { Check, Column, CreateDateColumn, Entity, Index, PrimaryColumn } from 'typeorm';

/** Conversation kinds: a group, or a direct (1:1) conversation of two users. */
export type ConversationKind = 'GROUP' | 'DIRECT';

/** An MLS group as the delivery service knows it: its epoch, log counter and newest GroupInfo. */
@Entity('conversations')
@Check('conversations_kind', `"kind" IN ('GROUP', 'DIRECT')`)
@Check(
  'conversations_message_timer',
  `"message_timer_seconds" = 0 OR "message_timer_seconds" BETWEEN 5 AND 86400`,
)
@Check(
  'conversations_direct_pair',
  `("kind" = 'DIRECT') = ("direct_user_low" IS NOT NULL AND "direct_user_high" IS NOT NULL) AND ("direct_user_low" IS NULL OR "direct_user_low" < "direct_user_high")`,
)
// One DIRECT conversation per unordered pair of users, whichever instance creates it: the pair is
// stored ordered (low < high), so both users starting it at once collide on this key.
@Index('conversations_direct_pair_key', ['directUserLow', 'directUserHigh'], {
  unique: true,
  where: `"kind" = 'DIRECT'`,
})
export class ConversationEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('bytea', { name: 'group_id', unique: true })
  groupId!: Buffer;

  @Column('text')
  kind!: ConversationKind;

  /** DIRECT: the smaller of the two users' ids; null for a GROUP. */
  @Column('uuid', { name: 'direct_user_low', nullable: true })
  directUserLow!: string | null;

  /** DIRECT: the greater of the two users' ids; null for a GROUP. */
  @Column('uuid', { name: 'direct_user_high', nullable: true })
  directUserHigh!: string | null;

  @Column('integer')
  ciphersuite!: number;

  /** The one epoch the server accepts commits for. int8: a string in JavaScript. */
  @Column('bigint')
  epoch!: string;

  /** Sequence number of the newest log entry, shared by commits and application messages. */
  @Column('bigint', { name: 'last_seq' })
  lastSeq!: string;

  /** Oldest sequence number still stored; older entries were deleted by retention. */
  @Column('bigint', { name: 'retained_from_seq' })
  retainedFromSeq!: string;

  /**
   * The newest GroupInfo (MLSMessage), for the current epoch; null until the first commit when
   * the creating client could not export one for epoch 0 (OpenMLS via core-crypto cannot).
   */
  @Column('bytea', { name: 'group_info', nullable: true })
  groupInfo!: Buffer | null;

  /**
   * The message timer in force, seconds (0 = off), from the newest TIMER entry: application
   * messages appended while it is on expire that long after they are stored.
   */
  @Column('integer', { name: 'message_timer_seconds', default: 0 })
  messageTimerSeconds!: number;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}

/**
 * A conversation row without its GroupInfo (some 230 KiB at 1,000 members): what work under the
 * row lock reads, since it writes a new GroupInfo rather than reading the stored one.
 */
export type ConversationState = Omit<ConversationEntity, 'groupInfo'>;
