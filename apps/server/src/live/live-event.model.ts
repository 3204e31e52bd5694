import { createUnionType, Field, ID, Int, ObjectType } from '@nestjs/graphql';
import { CallChangeValue, CallModel } from '../calls/call.model.js';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';
import { SafeIntScalar } from '../common/scalars/safe-int.scalar.js';
import {
  ConversationKindValue,
  ConversationRoleValue,
} from '../conversations/conversation.model.js';
import { LogEntryModel } from '../messages/message.model.js';

/**
 * The first event of every subscription: from here on nothing is missed, so this is when a
 * client catches up with `messages(after:)` (and drops entries it then also hears live).
 */
@ObjectType('SubscribedEvent')
export class SubscribedEventModel {
  @Field(() => ID)
  subscribedDeviceId!: string;
}

/** A new entry in one of the device's conversations. */
@ObjectType('LogEntryEvent')
export class LogEntryEventModel {
  @Field(() => LogEntryModel)
  entry!: LogEntryModel;
}

/** A commit changed a conversation's roster. */
@ObjectType('RosterEvent')
export class RosterEventModel {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => SafeIntScalar, { description: 'Log entry of the commit' })
  seq!: string;

  @Field(() => SafeIntScalar, { description: 'The epoch the commit started' })
  epoch!: string;

  @Field(() => [ID])
  addedDeviceIds!: string[];

  @Field(() => [ID], { description: 'A removed device receives this, then nothing more of it' })
  removedDeviceIds!: string[];
}

/** A Welcome waits for the device (fetch it with `welcomes`). */
@ObjectType('WelcomeEvent')
export class WelcomeEventModel {
  @Field(() => ID)
  welcomeId!: string;

  @Field(() => ID)
  conversationId!: string;

  @Field(() => SafeIntScalar)
  epoch!: string;

  @Field(() => SafeIntScalar, { description: 'Read the log after this entry' })
  commitSeq!: string;

  @Field()
  createdAt!: Date;
}

/** The device's key packages run low: upload more. */
@ObjectType('KeyPackagesLowEvent')
export class KeyPackagesLowEventModel {
  @Field(() => ID)
  deviceId!: string;

  @Field(() => Int)
  available!: number;

  @Field(() => Int)
  lowWater!: number;
}

/** A member device asked to leave: the next commit (anyone's) should remove its leaf. */
@ObjectType('LeaveEvent')
export class LeaveEventModel {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => ID)
  leavingDeviceId!: string;
}

/**
 * A member device was deleted: it can no longer read or post, and the next commit (anyone's)
 * should remove its leaf. Its roster seat stays until then.
 */
@ObjectType('DeviceRevokedEvent')
export class DeviceRevokedEventModel {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => ID)
  revokedDeviceId!: string;
}

/** A user's role changed (an admin's setMemberRole, or a promotion when the last admin left). */
@ObjectType('RoleChangedEvent')
export class RoleChangedEventModel {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => ID)
  userId!: string;

  @Field(() => ConversationRoleValue)
  role!: ConversationRoleValue;
}

/**
 * A conversation of the device's user that the device may now join by external commit (see
 * `joinableConversations`); the SDK joins it at once.
 */
@ObjectType('JoinableConversationEvent')
export class JoinableConversationEventModel {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => ConversationKindValue)
  kind!: ConversationKindValue;
}

/**
 * An ephemeral signal of a member device (typing, read receipt): an MLS PrivateMessage that the
 * server stored nowhere and sends only to devices live right now; never in `messages`.
 */
@ObjectType('EphemeralEvent')
export class EphemeralEventModel {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => ID)
  senderDeviceId!: string;

  @Field(() => BytesScalar, { description: 'MLSMessage carrying a PrivateMessage (application)' })
  message!: Buffer;
}

/**
 * Log entries that the message timer deleted before they reached the device (in their place in
 * the log's order): their bytes are gone, for every device.
 */
@ObjectType('ExpiredEvent')
export class ExpiredEventModel {
  @Field(() => ID)
  conversationId!: string;

  @Field(() => SafeIntScalar)
  expiredFromSeq!: string;

  @Field(() => SafeIntScalar)
  expiredToSeq!: string;
}

/**
 * A call of one of the device's conversations changed: started (ring), someone joined or left,
 * or it ended. Carries the call as it is after the change.
 */
@ObjectType('CallEvent')
export class CallEventModel {
  @Field(() => CallChangeValue)
  callChange!: CallChangeValue;

  @Field(() => ID, { description: 'The device that started, joined, left or ended the call' })
  callDeviceId!: string;

  @Field(() => CallModel)
  call!: CallModel;
}

/** Everything a device hears live; each carries what it needs to resume with `messages(after:)`. */
export const DeviceEventUnion = createUnionType({
  name: 'DeviceEvent',
  types: () =>
    [
      SubscribedEventModel,
      LogEntryEventModel,
      RosterEventModel,
      WelcomeEventModel,
      KeyPackagesLowEventModel,
      LeaveEventModel,
      DeviceRevokedEventModel,
      RoleChangedEventModel,
      JoinableConversationEventModel,
      EphemeralEventModel,
      ExpiredEventModel,
      CallEventModel,
    ] as const,
  resolveType(value: object) {
    if ('subscribedDeviceId' in value) return SubscribedEventModel;
    if ('expiredFromSeq' in value) return ExpiredEventModel;
    if ('callChange' in value) return CallEventModel;
    // Only this one carries a message at its top level (a log entry's is inside `entry`).
    if ('message' in value) return EphemeralEventModel;
    if ('entry' in value) return LogEntryEventModel;
    if ('removedDeviceIds' in value) return RosterEventModel;
    if ('welcomeId' in value) return WelcomeEventModel;
    if ('leavingDeviceId' in value) return LeaveEventModel;
    if ('revokedDeviceId' in value) return DeviceRevokedEventModel;
    if ('role' in value) return RoleChangedEventModel;
    // Only this one carries a kind at its top level (a log entry's is inside `entry`).
    if ('kind' in value) return JoinableConversationEventModel;
    return KeyPackagesLowEventModel;
  },
});

/** One value of {@link DeviceEventUnion}. */
export type DeviceEvent =
  | SubscribedEventModel
  | LogEntryEventModel
  | RosterEventModel
  | WelcomeEventModel
  | KeyPackagesLowEventModel
  | LeaveEventModel
  | DeviceRevokedEventModel
  | RoleChangedEventModel
  | JoinableConversationEventModel
  | EphemeralEventModel
  | ExpiredEventModel
  | CallEventModel;
