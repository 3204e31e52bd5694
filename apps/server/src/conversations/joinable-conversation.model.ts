import { Field, ID, ObjectType } from '@nestjs/graphql';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { SafeIntScalar } from '../common/scalars/safe-int.scalar.js';
import { ConversationKindValue } from './conversation.model.js';

/** A conversation a device may join by external commit, with the GroupInfo to join from. */
@ObjectType('JoinableConversation')
export class JoinableConversationModel {
  @Field(() => ID)
  id!: string;

  @Field(() => ConversationKindValue)
  kind!: ConversationKindValue;

  @Field(() => SafeIntScalar, { description: 'The epoch of the GroupInfo' })
  epoch!: string;

  @Field(() => BytesScalar, {
    description: 'GroupInfo (MLSMessage) with external_pub and the ratchet tree: commit to it',
  })
  groupInfo!: Buffer;
}
