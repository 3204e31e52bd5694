import { Field, InputType, Int } from '@nestjs/graphql';
import { isString, isUUID } from 'class-validator';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { checkByHand } from '../common/validation.pipe.js';
import { ConversationDeviceInput } from '../conversations/conversation.input.js';

/** An application message for a conversation. */
@InputType()
export class SendMessageInput extends ConversationDeviceInput {
  @Field(() => BytesScalar, { description: 'MLSMessage carrying a PrivateMessage (application)' })
  message!: Buffer;
}

// The send path's input (sendMessage, sendEphemeral): ConversationDeviceInput's @IsString() and
// @IsUUID(), with class-validator's own functions and messages; `message` is a Bytes scalar,
// already a Buffer, which no decorator checks.
checkByHand(SendMessageInput, (input) => [
  ...(isString(input.deviceId) ? [] : ['deviceId must be a string']),
  ...(isUUID(input.conversationId) ? [] : ['conversationId must be a UUID']),
]);

/** A change of the conversation's message timer, authenticated inside an MLS application message. */
@InputType()
export class SetMessageTimerInput extends SendMessageInput {
  @Field(() => Int, {
    description:
      'Seconds (5 to 86,400), or 0 for off; the same value the encrypted message carries, which members check',
  })
  seconds!: number;
}
