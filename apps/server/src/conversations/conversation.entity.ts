import { Check, Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/** Conversation kinds; direct (1:1) conversations come later. */
export type ConversationKind = 'GROUP';

/** An MLS group as the delivery service knows it: its epoch, log counter and newest GroupInfo. */
@Entity('conversations')
@Check('conversations_kind', `"kind" IN ('GROUP')`)
export class ConversationEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('bytea', { name: 'group_id', unique: true })
  groupId!: Buffer;

  @Column('text')
  kind!: ConversationKind;

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

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
