import type { CallChangeValue, CallModel } from '../calls/call.model.js';

/** The pub/sub channel of a conversation's log entries and roster changes. */
export const conversationChannel = (conversationId: string) => `conversation:${conversationId}`;

/** The pub/sub channel of what concerns one device alone (Welcomes, key packages running low). */
export const deviceChannel = (deviceId: string) => `device:${deviceId}`;

/** A new entry of a conversation's log, with its bytes, so no subscriber has to fetch it. */
export type MessageLiveEvent = {
  type: 'message';
  conversationId: string;
  seq: string;
  kind: 'COMMIT' | 'APPLICATION' | 'TIMER';
  epoch: string;
  senderDeviceId: string;
  createdAt: Date;
  /** Application messages stored while a timer was on: past it, the bytes are not delivered. */
  expiresAt: Date | null;
  /** TIMER entries: the timer set, in seconds. */
  timerSeconds: number | null;
  /** The MLSMessage, base64. */
  data: string;
};

/** Devices a commit (at `seq`) added to or removed from a conversation. */
export type RosterLiveEvent = {
  type: 'roster';
  conversationId: string;
  seq: string;
  epoch: string;
  added: string[];
  removed: string[];
};

/** A Welcome is waiting for the device. */
export type WelcomeLiveEvent = {
  type: 'welcome';
  deviceId: string;
  welcomeId: string;
  conversationId: string;
  epoch: string;
  commitSeq: string;
  createdAt: Date;
};

/** The device's available key packages fell below its low-water mark. */
export type KeyPackagesLowLiveEvent = {
  type: 'key-packages-low';
  deviceId: string;
  available: number;
  lowWater: number;
};

/** A device asked to leave a conversation; the next commit should remove it. */
export type LeaveLiveEvent = {
  type: 'leave';
  conversationId: string;
  deviceId: string;
};

/** The device was deleted (on its own channel): its subscriptions end with DEVICE_REVOKED. */
export type DeviceRevokedLiveEvent = {
  type: 'device-revoked';
  deviceId: string;
};

/**
 * A member device of the conversation was deleted: it hears and posts nothing more, and the next
 * commit (any member's) should remove its leaf, as for a device that left.
 */
export type MemberRevokedLiveEvent = {
  type: 'member-revoked';
  conversationId: string;
  deviceId: string;
};

/** A user's role in a conversation changed (on the conversation's channel). */
export type RoleLiveEvent = {
  type: 'role';
  conversationId: string;
  userId: string;
  role: 'ADMIN' | 'MEMBER';
};

/**
 * A conversation the device may now join by external commit (on its own channel): a commit added
 * a device of its user there, and this device never held a seat in it.
 */
export type JoinableLiveEvent = {
  type: 'joinable';
  conversationId: string;
  deviceId: string;
  kind: 'GROUP' | 'DIRECT';
};

/**
 * An ephemeral signal (typing, read receipt): an MLS application message checked like any other
 * but stored nowhere, published once to the conversation's channel. A device not live misses it.
 */
export type EphemeralLiveEvent = {
  type: 'ephemeral';
  conversationId: string;
  senderDeviceId: string;
  /** The MLSMessage, base64. */
  data: string;
};

/** A call of the conversation changed (on the conversation's channel), with its state after. */
export type CallLiveEvent = {
  type: 'call';
  change: CallChangeValue;
  /** The device that started, joined, left (or was dropped from), or ended the call. */
  deviceId: string;
  call: CallModel;
};

/** Everything published on Parley's channels. */
export type LiveEvent =
  | MessageLiveEvent
  | RosterLiveEvent
  | WelcomeLiveEvent
  | KeyPackagesLowLiveEvent
  | LeaveLiveEvent
  | DeviceRevokedLiveEvent
  | MemberRevokedLiveEvent
  | RoleLiveEvent
  | JoinableLiveEvent
  | EphemeralLiveEvent
  | CallLiveEvent;
