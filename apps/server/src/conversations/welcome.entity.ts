import {
  Column,
  CreateDateColumn,
  Entity,
  JoinColumn,
  ManyToOne,
  PrimaryColumn,
  PrimaryGeneratedColumn,
  Index,
} from 'typeorm';
import { DeviceEntity } from '../devices/device.entity.js';
import { ConversationEntity } from './conversation.entity.js';

/** A Welcome (MLSMessage) of an accepted commit, stored once for all the devices it adds. */
@Entity('welcomes')
export class WelcomeEntity {
  @PrimaryGeneratedColumn('identity', { generatedIdentity: 'ALWAYS', type: 'bigint' })
  id!: string;

  @Column('uuid', { name: 'conversation_id' })
  conversationId!: string;

  @ManyToOne(() => ConversationEntity, { onDelete: 'CASCADE' })
  @JoinColumn({
    name: 'conversation_id',
    foreignKeyConstraintName: 'welcomes_conversation_id_fkey',
  })
  conversation?: ConversationEntity;

  /** The log entry of the commit this Welcome belongs to; joiners read the log after it. */
  @Column('bigint', { name: 'commit_seq' })
  commitSeq!: string;

  /** The epoch the Welcome joins. */
  @Column('bigint')
  epoch!: string;

  @Column('bytea')
  data!: Buffer;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}

/** A device a Welcome is routed to, by the KeyPackageRef in the Welcome's secrets. */
@Entity('welcome_recipients')
@Index('welcome_recipients_device_id_idx', ['deviceId', 'welcomeId'])
export class WelcomeRecipientEntity {
  @PrimaryColumn('bigint', {
    name: 'welcome_id',
    primaryKeyConstraintName: 'welcome_recipients_pkey',
  })
  welcomeId!: string;

  @ManyToOne(() => WelcomeEntity, { onDelete: 'CASCADE' })
  @JoinColumn({
    name: 'welcome_id',
    foreignKeyConstraintName: 'welcome_recipients_welcome_id_fkey',
  })
  welcome?: WelcomeEntity;

  @PrimaryColumn('text', { name: 'device_id', primaryKeyConstraintName: 'welcome_recipients_pkey' })
  deviceId!: string;

  @ManyToOne(() => DeviceEntity, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'device_id', foreignKeyConstraintName: 'welcome_recipients_device_id_fkey' })
  device?: DeviceEntity;

  @Column('bytea', { name: 'key_package_ref' })
  keyPackageRef!: Buffer;
}
