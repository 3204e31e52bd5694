import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A fixed-window counter, kept in the database so that every server instance shares it. */
@Entity('rate_limit_windows')
export class RateLimitWindowEntity {
  @PrimaryColumn('text')
  key!: string;

  @Column('timestamptz', { name: 'window_start' })
  windowStart!: Date;

  @Column('integer')
  hits!: number;
}
