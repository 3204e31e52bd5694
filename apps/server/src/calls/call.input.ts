import { Field, ID, InputType } from '@nestjs/graphql';
import { IsString, IsUUID } from 'class-validator';
import { ConversationDeviceInput } from '../conversations/conversation.input.js';
import { CallMediaValue } from './call.model.js';

/** Starts a call in a conversation. */
@InputType()
export class StartCallInput extends ConversationDeviceInput {
  @Field(() => CallMediaValue)
  media!: CallMediaValue;
}

/** Names a call and the caller's device in it (join, heartbeat, leave, end). */
@InputType()
export class CallDeviceInput {
  @Field(() => ID)
  @IsUUID()
  callId!: string;

  @Field(() => ID)
  @IsString()
  deviceId!: string;
}
