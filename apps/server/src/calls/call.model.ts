import { Field, ID, ObjectType, registerEnumType } from '@nestjs/graphql';

/** What a call carries. */
export enum CallMediaValue {
  AUDIO = 'AUDIO',
  VIDEO = 'VIDEO',
}
registerEnumType(CallMediaValue, { name: 'CallMedia' });

/** What happened to a call, in a CallEvent. */
export enum CallChangeValue {
  /** Someone started it: the other members' devices ring. */
  STARTED = 'STARTED',
  JOINED = 'JOINED',
  /** A device left, stopped answering (heartbeat), or was removed from the conversation. */
  LEFT = 'LEFT',
  /** The last participant left, or the starter or an admin ended it for everyone. */
  ENDED = 'ENDED',
}
registerEnumType(CallChangeValue, { name: 'CallChange' });

/** A device in a call. */
@ObjectType('CallParticipant')
export class CallParticipantModel {
  @Field(() => ID)
  deviceId!: string;

  @Field(() => ID)
  userId!: string;

  @Field()
  joinedAt!: Date;
}

/** A call of a conversation: visible metadata (who, when, how long), never its media or keys. */
@ObjectType('Call')
export class CallModel {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  conversationId!: string;

  @Field(() => CallMediaValue)
  media!: CallMediaValue;

  @Field(() => ID)
  startedByDeviceId!: string;

  @Field()
  startedAt!: Date;

  @Field(() => Date, { nullable: true, description: 'Null while the call runs' })
  endedAt!: Date | null;

  @Field(() => [CallParticipantModel])
  participants!: CallParticipantModel[];
}

/** A STUN or TURN server for WebRTC, from the server's configuration. */
@ObjectType('IceServer')
export class IceServerModel {
  @Field(() => [String])
  urls!: string[];

  @Field(() => String, { nullable: true })
  username!: string | null;

  @Field(() => String, { nullable: true })
  credential!: string | null;
}
