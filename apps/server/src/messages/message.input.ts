import { Field, InputType, Int } from '@nestjs/graphql';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { ConversationDeviceInput } from '../conversations/conversation.input.js';

/** An application message for a conversation. */
@InputType()
export class SendMessageInput extends ConversationDeviceInput {
  @Field(() => BytesScalar, { description: 'MLSMessage carrying a PrivateMessage (application)' })
  message!: Buffer;
}

/** A change of the conversation's message timer, authenticated inside an MLS application message. */
@InputType()
export class SetMessageTimerInput extends SendMessageInput {
  @Field(() => Int, {
    description:
      'Seconds (5 to 86,400), or 0 for off; the same value the encrypted message carries, which members check',
  })
  seconds!: number;
}
