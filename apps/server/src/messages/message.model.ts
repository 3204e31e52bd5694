import { Field, ID, ObjectType, registerEnumType } from '@nestjs/graphql';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { SafeIntScalar } from '../common/scalars/safe-int.scalar.js';

/** What a log entry carries. */
export enum LogEntryKindValue {
  COMMIT = 'COMMIT',
  APPLICATION = 'APPLICATION',
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
    description: 'MLSMessage: a PublicMessage commit or a PrivateMessage',
  })
  message!: Buffer;
}

/** Entries retention deleted before the device read them: it must recover (rejoin) the group. */
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

  @Field(() => [LogEntryModel])
  entries!: LogEntryModel[];

  @Field({ description: 'More entries follow the last one of this page' })
  hasMore!: boolean;

  @Field(() => SafeIntScalar)
  lastSeq!: string;
}
