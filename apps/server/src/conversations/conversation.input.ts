import { Field, ID, InputType, Int } from '@nestjs/graphql';
import { IsEnum, IsInt, IsOptional, IsString, IsUUID } from 'class-validator';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { ConversationKindValue, ConversationRoleValue } from './conversation.model.js';

/** An MLS group the caller's device has just created (epoch 0, alone at leaf 0). */
@InputType()
export class CreateConversationInput {
  @Field(() => ID)
  @IsString()
  deviceId!: string;

  @Field(() => BytesScalar, { description: 'The MLS group id; unique' })
  groupId!: Buffer;

  @Field(() => ConversationKindValue, { defaultValue: ConversationKindValue.GROUP })
  @IsEnum(ConversationKindValue)
  kind!: ConversationKindValue;

  @Field(() => ID, {
    nullable: true,
    description: 'DIRECT: the other user (required); refused for a GROUP',
  })
  @IsOptional()
  @IsString()
  peerUserId?: string | null;

  @Field(() => BytesScalar, {
    nullable: true,
    description:
      'GroupInfo (MLSMessage) of epoch 0 with the ratchet_tree extension; clients that cannot ' +
      'export one (OpenMLS) leave it out and the first commit bundle brings the GroupInfo',
  })
  @IsOptional()
  groupInfo?: Buffer | null;

  @Field(() => Int, {
    nullable: true,
    description: 'The MLS ciphersuite; required without a GroupInfo, else it must match it',
  })
  @IsOptional()
  @IsInt()
  ciphersuite?: number | null;
}

/** A conversation, and the caller's device acting in it. */
@InputType({ isAbstract: true })
export abstract class ConversationDeviceInput {
  @Field(() => ID)
  @IsString()
  deviceId!: string;

  @Field(() => ID)
  @IsUUID()
  conversationId!: string;
}

/** A commit with everything that travels with it, accepted whole or not at all. */
@InputType()
export class SubmitCommitBundleInput extends ConversationDeviceInput {
  @Field(() => BytesScalar, { description: 'MLSMessage carrying a PublicMessage commit' })
  commit!: Buffer;

  @Field(() => BytesScalar, {
    description: 'GroupInfo (MLSMessage) of the new epoch, with the ratchet_tree extension',
  })
  groupInfo!: Buffer;

  @Field(() => BytesScalar, {
    nullable: true,
    description: 'Welcome (MLSMessage) for the added members; required exactly when adding',
  })
  @IsOptional()
  welcome?: Buffer | null;
}

/** An admin sets a user's role in a group. */
@InputType()
export class SetMemberRoleInput extends ConversationDeviceInput {
  @Field(() => ID)
  @IsString()
  userId!: string;

  @Field(() => ConversationRoleValue)
  @IsEnum(ConversationRoleValue)
  role!: ConversationRoleValue;
}
