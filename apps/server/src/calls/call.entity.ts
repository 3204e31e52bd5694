import { Check, Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { ConversationEntity } from '../conversations/conversation.entity.js';

/** What a call carries: voice alone, or voice and video. */
export type CallMedia = 'AUDIO' | 'VIDEO';

/**
 * A call in a conversation: who started it, when, when it ended. Visible metadata: the server
 * learns who calls whom, when and for how long, never the media or its keys (SFrame keys come from
 * the MLS group, which the server is not in).
 */
@Entity('calls')
@Check('calls_media', `"media" IN ('AUDIO', 'VIDEO')`)
// One running call per conversation, whichever instance starts it.
@Index('calls_running_key', ['conversationId'], { unique: true, where: `"ended_at" IS NULL` })
export class CallEntity {
  @PrimaryColumn('uuid', { primaryKeyConstraintName: 'calls_pkey' })
  id!: string;

  @Column('uuid', { name: 'conversation_id' })
  conversationId!: string;

  @ManyToOne(() => ConversationEntity, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'conversation_id', foreignKeyConstraintName: 'calls_conversation_id_fkey' })
  conversation?: ConversationEntity;

  @Column('text')
  media!: CallMedia;

  /** No foreign key: the record outlives a deleted device. */
  @Column('text', { name: 'started_by_device_id' })
  startedByDeviceId!: string;

  @Column('timestamptz', { name: 'started_at', default: () => 'now()' })
  startedAt!: Date;

  /** Null while the call runs. */
  @Column('timestamptz', { name: 'ended_at', nullable: true })
  endedAt!: Date | null;
}

/** A device in a running call, with the last time it said it was still there. */
@Entity('call_participants')
@Index('call_participants_last_seen_idx', ['lastSeenAt'])
@Index('call_participants_device_idx', ['deviceId'])
export class CallParticipantEntity {
  @PrimaryColumn('uuid', { name: 'call_id', primaryKeyConstraintName: 'call_participants_pkey' })
  callId!: string;

  @ManyToOne(() => CallEntity, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'call_id', foreignKeyConstraintName: 'call_participants_call_id_fkey' })
  call?: CallEntity;

  @PrimaryColumn('text', { name: 'device_id', primaryKeyConstraintName: 'call_participants_pkey' })
  deviceId!: string;

  @Column('timestamptz', { name: 'joined_at', default: () => 'now()' })
  joinedAt!: Date;

  @Column('timestamptz', { name: 'last_seen_at', default: () => 'now()' })
  lastSeenAt!: Date;
}
