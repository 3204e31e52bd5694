import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * rate-limiter-flexible's PostgreSQL store, in the layout it expects. The library reads and
 * writes it; this entity only states its shape, so that the check of migrations against
 * entities covers it. Every server instance on the database counts against the same rows.
 */
@Entity('rate_limits')
export class RateLimitEntity {
  /** `<prefix>:<limit>:<key>`. */
  @PrimaryColumn('varchar', { length: 255, primaryKeyConstraintName: 'rate_limits_pkey' })
  key!: string;

  @Column('integer', { default: 0 })
  points!: number;

  /** Milliseconds since the epoch when the counter resets; null: never. */
  @Index('rate_limits_expire_idx')
  @Column('bigint', { nullable: true })
  expire!: string | null;
}
