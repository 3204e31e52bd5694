import { Check, Column, Entity, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { ConversationEntity } from './conversation.entity.js';

/** A user's role in a conversation. */
export type ConversationRole = 'ADMIN' | 'MEMBER';

/**
 * The role of one user in one conversation: per user, not per device, since all of a user's
 * devices act for one person. A row exists while the user holds a seat (a device on the roster).
 */
@Entity('conversation_roles')
@Check('conversation_roles_role', `"role" IN ('ADMIN', 'MEMBER')`)
export class ConversationRoleEntity {
  @PrimaryColumn('uuid', {
    name: 'conversation_id',
    primaryKeyConstraintName: 'conversation_roles_pkey',
  })
  conversationId!: string;

  @ManyToOne(() => ConversationEntity, { onDelete: 'CASCADE' })
  @JoinColumn({
    name: 'conversation_id',
    foreignKeyConstraintName: 'conversation_roles_conversation_id_fkey',
  })
  conversation?: ConversationEntity;

  @PrimaryColumn('uuid', { name: 'user_id', primaryKeyConstraintName: 'conversation_roles_pkey' })
  userId!: string;

  @Column('text')
  role!: ConversationRole;

  /**
   * Log entry of the commit that brought the user's first device in (0 for the creator): the
   * longest-standing remaining user is promoted when the last admin goes.
   */
  @Column('bigint', { name: 'joined_seq' })
  joinedSeq!: string;
}
