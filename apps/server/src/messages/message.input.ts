import { Field, InputType } from '@nestjs/graphql';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { ConversationDeviceInput } from '../conversations/conversation.input.js';

/** An application message for a conversation. */
@InputType()
export class SendMessageInput extends ConversationDeviceInput {
  @Field(() => BytesScalar, { description: 'MLSMessage carrying a PrivateMessage (application)' })
  message!: Buffer;
}
