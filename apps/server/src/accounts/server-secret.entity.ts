import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/** Secrets the server generates once and shares between its instances through the database. */
@Entity('server_secrets')
export class ServerSecretEntity {
  @PrimaryColumn('text')
  name!: string;

  @Column('text')
  value!: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
