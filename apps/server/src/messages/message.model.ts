import { Field, ID, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { SafeIntScalar } from '../common/scalars/safe-int.scalar.js';

/** What a log entry carries. */
export enum LogEntryKindValue {
  COMMIT = 'COMMIT',
  APPLICATION = 'APPLICATION',
  TIMER = 'TIMER',
}
registerEnumType(LogEntryKindValue, { name: 'LogEntryKind' });

/** One entry of a conversation's log. */
@ObjectType('LogEntry')
export class LogEntryModel {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => SafeIntScalar, { description: 'Position in the log; commits and messages share it' })
  seq!: string;

  @Field(() => LogEntryKindValue)
  kind!: LogEntryKindValue;

  @Field(() => SafeIntScalar, { description: 'The epoch the entry was sent in' })
  epoch!: string;

  @Field(() => ID)
  senderDeviceId!: string;

  @Field()
  createdAt!: Date;

  @Field(() => BytesScalar, {
    description:
      'MLSMessage: a PublicMessage commit, or a PrivateMessage (an application message or a timer change)',
  })
  message!: Buffer;

  @Field(() => Date, {
    nullable: true,
    description:
      'When the server deletes this application message: its storage time plus the timer in force at its seq; null when no timer was on',
  })
  expiresAt!: Date | null;

  @Field(() => Int, {
    nullable: true,
    description:
      'TIMER entries: the timer set, in seconds (0 = off), as the sender told the server; members check it against the encrypted entry',
  })
  timerSeconds!: number | null;
}

/**
 * A range of the log whose entries were deleted: by retention before the device read them (the
 * page's `gap`: it must recover, rejoin, the group), or by the message timer (`expired`).
 */
@ObjectType('LogGap')
export class LogGapModel {
  @Field(() => SafeIntScalar)
  fromSeq!: string;

  @Field(() => SafeIntScalar)
  toSeq!: string;
}

/** A page of a conversation's log, in order. */
@ObjectType('LogPage')
export class LogPageModel {
  @Field(() => LogGapModel, {
    nullable: true,
    description: 'Set when entries after the cursor were deleted: they are missing, not skipped',
  })
  gap!: LogGapModel | null;

  @Field(() => [LogGapModel], {
    description:
      'Ranges of this page whose application messages the timer deleted: gone for every device, nothing to recover',
  })
  expired!: LogGapModel[];

  @Field(() => [LogEntryModel])
  entries!: LogEntryModel[];

  @Field({ description: 'More entries follow the last one of this page' })
  hasMore!: boolean;

  @Field(() => SafeIntScalar)
  lastSeq!: string;
}
