import {
  Column,
  CreateDateColumn,
  Entity,
  Index,
  JoinColumn,
  ManyToOne,
  PrimaryGeneratedColumn,
} from 'typeorm';
import { DeviceEntity } from '../devices/device.entity.js';

/** A validated MLS key package, kept as the MLSMessage bytes the device uploaded. */
@Entity('key_packages')
@Index('key_packages_available_idx', ['deviceId', 'id'], {
  where: `"claimed_at" IS NULL AND NOT "last_resort"`,
})
@Index('key_packages_last_resort_idx', ['deviceId'], { unique: true, where: `"last_resort"` })
@Index('key_packages_claimed_at_idx', ['claimedAt'], {
  where: `"claimed_at" IS NOT NULL AND NOT "last_resort"`,
})
export class KeyPackageEntity {
  /** Upload order; claims hand out the oldest first. int8, so a string in JavaScript. */
  @PrimaryGeneratedColumn('identity', { generatedIdentity: 'ALWAYS', type: 'bigint' })
  id!: string;

  @Column('text', { name: 'device_id' })
  deviceId!: string;

  @ManyToOne(() => DeviceEntity, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'device_id', foreignKeyConstraintName: 'key_packages_device_id_fkey' })
  device?: DeviceEntity;

  /** KeyPackageRef (RFC 9420 §5.2): how Welcomes name the key package. */
  @Column('bytea', { unique: true })
  ref!: Buffer;

  @Column('integer')
  ciphersuite!: number;

  @Column('bytea')
  data!: Buffer;

  @Column('timestamptz', { name: 'not_before' })
  notBefore!: Date;

  @Column('timestamptz', { name: 'not_after' })
  notAfter!: Date;

  /** Handed out only when nothing else is left, and never consumed. */
  @Column('boolean', { name: 'last_resort', default: false })
  lastResort!: boolean;

  /**
   * Set when a claim consumed it; the row is kept so that the commit adding the device can prove
   * the claim, and deleted when the device acknowledges its Welcome or the claimed-key-package
   * retention passes (see claimed-key-packages.ts).
   */
  @Column('timestamptz', { name: 'claimed_at', nullable: true })
  claimedAt!: Date | null;

  @ManyToOne(() => DeviceEntity, { onDelete: 'SET NULL', nullable: true })
  @JoinColumn({
    name: 'claimed_by_device_id',
    foreignKeyConstraintName: 'key_packages_claimed_by_device_id_fkey',
  })
  claimedByDevice?: DeviceEntity | null;

  @Column('text', { name: 'claimed_by_device_id', nullable: true })
  claimedByDeviceId!: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
