import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn, Unique } from 'typeorm';
import { DeviceEntity } from '../devices/device.entity.js';
import { ConversationEntity } from './conversation.entity.js';

/** One device on a conversation's roster: which leaf it holds, and how far it has read. */
@Entity('conversation_members')
@Unique('conversation_members_leaf_key', ['conversationId', 'leafIndex'])
export class ConversationMemberEntity {
  @PrimaryColumn('uuid', {
    name: 'conversation_id',
    primaryKeyConstraintName: 'conversation_members_pkey',
  })
  conversationId!: string;

  @ManyToOne(() => ConversationEntity, { onDelete: 'CASCADE' })
  @JoinColumn({
    name: 'conversation_id',
    foreignKeyConstraintName: 'conversation_members_conversation_id_fkey',
  })
  conversation?: ConversationEntity;

  @Index('conversation_members_device_id_idx')
  @PrimaryColumn('text', {
    name: 'device_id',
    primaryKeyConstraintName: 'conversation_members_pkey',
  })
  deviceId!: string;

  /**
   * No foreign key: a deleted device keeps its seat until a commit removes its leaf, so that
   * the roster keeps matching the MLS tree (it can neither read nor post: it no longer exists).
   */
  @ManyToOne(() => DeviceEntity, { createForeignKeyConstraints: false })
  @JoinColumn({ name: 'device_id' })
  device?: DeviceEntity | null;

  @Column('integer', { name: 'leaf_index' })
  leafIndex!: number;

  /** Sequence number of the entry that added the device (0 for the creator). */
  @Column('bigint', { name: 'joined_seq' })
  joinedSeq!: string;

  /**
   * The device asked to leave: it may no longer read or post, and the next commit of any member
   * removes its leaf (MLS lets no member remove itself).
   */
  @Column('boolean', { default: false })
  leaving!: boolean;

  /** The device's cursor: everything up to here is acknowledged. */
  @Column('bigint', { name: 'acked_seq' })
  ackedSeq!: string;
}
