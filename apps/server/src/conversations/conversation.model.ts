import { Field, ID, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { SafeIntScalar } from '../common/scalars/safe-int.scalar.js';

/** The kinds of conversation: a group, or a direct (1:1) conversation of two users. */
export enum ConversationKindValue {
  GROUP = 'GROUP',
  DIRECT = 'DIRECT',
}
registerEnumType(ConversationKindValue, { name: 'ConversationKind' });

/** A user's role in a conversation (all of the user's devices share it). */
export enum ConversationRoleValue {
  ADMIN = 'ADMIN',
  MEMBER = 'MEMBER',
}
registerEnumType(ConversationRoleValue, { name: 'ConversationRole' });

/** One seat of the roster: which device holds which leaf of the MLS tree. */
@ObjectType('ConversationMember')
export class ConversationMemberModel {
  @Field(() => ID)
  userId!: string;

  @Field(() => ID)
  deviceId!: string;

  @Field()
  identity!: string;

  @Field(() => Int)
  leafIndex!: number;

  @Field({ description: 'Asked to leave; the next commit should remove this leaf' })
  leaving!: boolean;

  @Field(() => ConversationRoleValue, { description: "The role of the device's user" })
  role!: ConversationRoleValue;
}

/** A conversation as one of its member devices sees it. */
@ObjectType('Conversation')
export class ConversationModel {
  @Field(() => ID)
  id!: string;

  @Field(() => BytesScalar, { description: 'The MLS group id' })
  groupId!: Buffer;

  @Field(() => ConversationKindValue)
  kind!: ConversationKindValue;

  @Field(() => ID, {
    nullable: true,
    description: 'DIRECT: the other user, seen from the caller; null for a GROUP',
  })
  peerUserId!: string | null;

  @Field(() => ConversationRoleValue, { description: "The caller's role" })
  role!: ConversationRoleValue;

  @Field(() => Int)
  ciphersuite!: number;

  @Field(() => SafeIntScalar, { description: 'The epoch the next commit must be for' })
  epoch!: string;

  @Field(() => SafeIntScalar, { description: 'Sequence number of the newest log entry' })
  lastSeq!: string;

  @Field(() => SafeIntScalar, { description: "This device's cursor" })
  ackedSeq!: string;

  @Field(() => [ConversationMemberModel], {
    description: 'The roster in leaf order (read only when asked for; one query per page)',
  })
  members!: ConversationMemberModel[];

  @Field(() => BytesScalar, {
    nullable: true,
    description:
      'The newest GroupInfo (MLSMessage), as the groupInfo query gives it; read only when asked for',
  })
  groupInfo!: Buffer | null;

  @Field({
    description:
      "This conversation's place in the conversations list (creation order): pass it as `after` for the next page",
  })
  cursor!: string;

  @Field(() => Int, {
    description:
      "The message timer in force, seconds (0 = off), as its last setter told the server; members read the authenticated value from the log's TIMER entries",
  })
  messageTimerSeconds!: number;

  @Field()
  createdAt!: Date;
}

/**
 * A conversation without the fields its resolvers read on demand (members, GroupInfo): what
 * the service returns, so that a list never reads what the query did not select.
 */
export type ConversationSummary = Omit<ConversationModel, 'members' | 'groupInfo'>;

/** A Welcome waiting for one of the caller's devices. */
@ObjectType('Welcome')
export class WelcomeModel {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  conversationId!: string;

  @Field(() => SafeIntScalar, { description: 'The epoch the Welcome joins' })
  epoch!: string;

  @Field(() => SafeIntScalar, {
    description: 'Log entry of the commit that added the device; read messages after it',
  })
  commitSeq!: string;

  @Field(() => BytesScalar, { description: 'MLSMessage (wire format mls_welcome)' })
  welcome!: Buffer;

  @Field(() => BytesScalar, { description: 'The KeyPackageRef it was routed by' })
  keyPackageRef!: Buffer;

  @Field()
  createdAt!: Date;
}

/** What an accepted commit bundle did. */
@ObjectType('CommitResult')
export class CommitResultModel {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => SafeIntScalar, { description: 'Log entry of the commit' })
  seq!: string;

  @Field(() => SafeIntScalar, { description: 'The new epoch' })
  epoch!: string;

  @Field(() => [ID], { description: 'Devices the commit added' })
  addedDeviceIds!: string[];

  @Field(() => [ID], { description: 'Devices the commit removed' })
  removedDeviceIds!: string[];
}
