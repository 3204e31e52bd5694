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
import { UserEntity } from '../accounts/user.entity.js';

/** One MLS client of a user. */
@Entity('devices')
@Check('devices_id_hex', `"id" ~ '^[0-9a-f]{16}$'`)
export class DeviceEntity {
  /** 64 random bits as 16 lower-case hex digits: the device part of the MLS identity. */
  @PrimaryColumn('text')
  id!: string;

  @Index('devices_user_id_idx')
  @Column('uuid', { name: 'user_id' })
  userId!: string;

  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'user_id', foreignKeyConstraintName: 'devices_user_id_fkey' })
  user?: UserEntity;

  @Column('text')
  name!: string;

  /** The MLS signature key of this device; bound at registration or first upload, then fixed. */
  @Column('bytea', { name: 'signature_key', nullable: true })
  signatureKey!: Buffer | null;

  /** Below this many available key packages, the device is told to upload more. */
  @Column('integer', { name: 'key_package_low_water' })
  keyPackageLowWater!: number;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
