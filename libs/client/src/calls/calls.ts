/**
 * Calls for any app: start, join, leave, end, the running call, ICE servers, live call events,
 * heartbeats while in a call, and end-to-end encrypted signalling (SDP and ICE candidates as
 * ephemeral MLS application messages, for one device each). The server keeps only who is in
 * which call; media keys come from the conversation's MLS group ({@link CallKeys}).
 */
import type { Envelope } from '../content/envelope.js';
import { callSignalEnvelope, type CallSignalKind } from '../content/envelope.js';
import type { ConversationStatus } from '../client/client-state.js';
import {
  closedError,
  isRetryable,
  NotAMemberError,
  NotFoundError,
  ParleyError,
} from '../errors.js';
import {
  CallHeartbeatDocument,
  type CallFieldsFragment,
  EndCallDocument,
  IceServersDocument,
  JoinCallDocument,
  LeaveCallDocument,
  RunningCallDocument,
  StartCallDocument,
} from '../graphql/generated.js';
import { unrefTimer } from '../client/timers.js';
import type { GraphqlTransport } from '../transport/graphql-transport.js';
import { CallKeys, type CallKeysOptions, type EpochSource } from './call-keys.js';

/** A participant sends a heartbeat this often (the server drops one silent for 30 s by default). */
export const CALL_HEARTBEAT_INTERVAL_MS = 10_000;

/** Audio only, or audio and video. */
export type CallMedia = 'AUDIO' | 'VIDEO';

/** A call as the server keeps it: who, when, how long — never what. */
export interface CallInfo {
  readonly id: string;
  readonly conversationId: string;
  readonly media: CallMedia;
  readonly startedByDeviceId: string;
  readonly startedAt: Date;
  /** Null while the call runs. */
  readonly endedAt: Date | null;
  readonly participants: readonly { deviceId: string; userId: string; joinedAt: Date }[];
}

/**
 * A change of a call of one of this device's conversations: STARTED (ring), a device JOINED or
 * LEFT (also dropped for silence, or removed from the conversation), ENDED.
 */
export interface CallEventInfo {
  readonly change: 'STARTED' | 'JOINED' | 'LEFT' | 'ENDED';
  /** The device that started, joined, left or ended the call. */
  readonly deviceId: string;
  readonly call: CallInfo;
}

/** A signal for this device, decrypted from the conversation's MLS group. */
export interface CallSignal {
  readonly callId: string;
  readonly conversationId: string;
  /** The sender, as its MLS credential names it (not as the server claims). */
  readonly fromDeviceId: string;
  readonly fromUserId: string;
  readonly kind: CallSignalKind;
  /** The SDP, or the ICE candidate as the sender serialised it. */
  readonly payload: string;
}

/** A STUN/TURN server from the server's configuration, as RTCIceServer takes it. */
export interface IceServer {
  readonly urls: string[];
  readonly username?: string;
  readonly credential?: string;
}

/** What {@link Calls} needs from its client. */
export interface CallsContext {
  readonly transport: GraphqlTransport;
  deviceId(): string;
  identity(): string;
  /** The conversation (for signals and keys); NotFoundError if this device is not in it. */
  conversation(id: string): EpochSource & {
    /** 'removed' or 'left' once this device is out of it (its epoch listeners are told). */
    readonly status: ConversationStatus;
    sendEphemeralEnvelope(envelope: Envelope): Promise<void>;
  };
  report(error: unknown): void;
}

/**
 * The calls of a client's conversations (`client.calls`). While this device is in a call it
 * sends a heartbeat every {@link CALL_HEARTBEAT_INTERVAL_MS}, until it leaves, the call ends,
 * the server drops it, or the client closes. When this device is removed from the call's
 * conversation (or leaves it), the server drops it from the call, but its live stream of that
 * conversation ends with the commit: the listeners then hear LEFT for this device (and ENDED if
 * it was the last one) from the SDK itself, with the participants it last knew; likewise when a
 * heartbeat's answer finds it out before the stream said so (then it may come twice). Errors are
 * the SDK's typed ParleyErrors (ConflictError with `details.reason` CALL_RUNNING and `details.callId` when a call already
 * runs, NotFoundError, ForbiddenError, NotAMemberError, LimitExceededError, NetworkError, …).
 */
export class Calls {
  /** The calls this device is in: heartbeat, last known state, watch on the conversation. */
  private readonly inCall = new Map<
    string,
    { timer: ReturnType<typeof setInterval>; call: CallInfo; unwatch: () => void }
  >();
  private readonly conversationOf = new Map<string, string>();
  private readonly callListeners = new Set<(event: CallEventInfo) => void>();
  private readonly signalListeners = new Set<(signal: CallSignal) => void>();
  private closed = false;

  /** @internal Made by ParleyClient. */
  constructor(private readonly context: CallsContext) {}

  /**
   * Starts a call in a conversation: this device joins it at once and the other members' devices
   * hear STARTED (ring). ConflictError (reason CALL_RUNNING, `details.callId`) if one runs.
   */
  async start(conversationId: string, media: CallMedia = 'AUDIO'): Promise<CallInfo> {
    const { startCall } = await this.context.transport.request(StartCallDocument, {
      input: { deviceId: this.context.deviceId(), conversationId, media },
    });
    return this.joined(toCallInfo(startCall));
  }

  /** Joins a running call (answering the ring); heartbeats start. */
  async join(callId: string): Promise<CallInfo> {
    const { joinCall } = await this.context.transport.request(JoinCallDocument, {
      input: { deviceId: this.context.deviceId(), callId },
    });
    return this.joined(toCallInfo(joinCall));
  }

  /** Leaves a call (the last participant out ends it); heartbeats stop first. */
  async leave(callId: string): Promise<CallInfo> {
    this.stopHeartbeat(callId);
    const { leaveCall } = await this.context.transport.request(LeaveCallDocument, {
      input: { deviceId: this.context.deviceId(), callId },
    });
    return this.seen(toCallInfo(leaveCall));
  }

  /** Ends a call for everyone (its starter or an admin; ForbiddenError otherwise). */
  async end(callId: string): Promise<CallInfo> {
    const { endCall } = await this.context.transport.request(EndCallDocument, {
      input: { deviceId: this.context.deviceId(), callId },
    });
    this.stopHeartbeat(callId);
    return this.seen(toCallInfo(endCall));
  }

  /** The conversation's running call, or null. */
  async running(conversationId: string): Promise<CallInfo | null> {
    const { runningCall } = await this.context.transport.request(RunningCallDocument, {
      deviceId: this.context.deviceId(),
      conversationId,
    });
    return runningCall === null ? null : this.seen(toCallInfo(runningCall));
  }

  /** STUN/TURN servers for RTCPeerConnection, from the server's configuration (may be none). */
  async iceServers(): Promise<IceServer[]> {
    const { iceServers } = await this.context.transport.request(IceServersDocument, {});
    return iceServers.map((server) => ({
      urls: server.urls,
      ...(server.username === null ? {} : { username: server.username }),
      ...(server.credential === null ? {} : { credential: server.credential }),
    }));
  }

  /** The calls this device is in now (sending heartbeats). */
  activeCalls(): string[] {
    return [...this.inCall.keys()];
  }

  /**
   * Sends a signal to one device of a call: an ephemeral MLS application message of the call's
   * conversation (only members can read it, only `toDeviceId` acts on it, nothing stores it).
   * Resolves once the server took it; the addressee hears it only if it is live now.
   */
  async sendSignal(
    callId: string,
    toDeviceId: string,
    signal: { kind: CallSignalKind; payload: string },
  ): Promise<void> {
    const conversationId = this.conversationOf.get(callId);
    if (conversationId === undefined) {
      throw new NotFoundError('NOT_FOUND', `Call ${callId} is not one this client has seen`);
    }
    await this.context
      .conversation(conversationId)
      .sendEphemeralEnvelope(
        callSignalEnvelope({ callId, to: toDeviceId, kind: signal.kind, payload: signal.payload }),
      );
  }

  /**
   * The media key source of a conversation's calls: SFrame keys from its MLS epochs, rekeyed on
   * every membership change (see {@link CallKeys}). Close it when the call ends.
   */
  keys(conversationId: string, options: Omit<CallKeysOptions, 'identity'> = {}): Promise<CallKeys> {
    return CallKeys.open(this.context.conversation(conversationId), {
      onError: (error) => {
        this.context.report(error);
      },
      ...options,
      identity: this.context.identity(),
    });
  }

  /** Calls `listener` on every call event of this device's conversations; returns an unsubscriber. */
  onCall(listener: (event: CallEventInfo) => void): () => void {
    this.callListeners.add(listener);
    return () => this.callListeners.delete(listener);
  }

  /** Calls `listener` on every call signal addressed to this device; returns an unsubscriber. */
  onSignal(listener: (signal: CallSignal) => void): () => void {
    this.signalListeners.add(listener);
    return () => this.signalListeners.delete(listener);
  }

  /** @internal A CallEvent from the live stream. */
  receive(event: {
    callChange: CallEventInfo['change'];
    callDeviceId: string;
    call: CallFieldsFragment;
  }): void {
    const call = this.seen(toCallInfo(event.call));
    const me = this.context.deviceId();
    // The server ended the call, or dropped this device (left elsewhere, silent, removed).
    if (
      event.callChange === 'ENDED' ||
      (event.callChange === 'LEFT' && event.callDeviceId === me) ||
      !call.participants.some((participant) => participant.deviceId === me)
    ) {
      this.stopHeartbeat(call.id);
    }
    this.tell(this.callListeners, {
      change: event.callChange,
      deviceId: event.callDeviceId,
      call,
    });
  }

  /**
   * @internal A decrypted ephemeral envelope: a call signal is handled here (true), whether for
   * this device or not; anything else is not a call signal (false).
   */
  dispatchSignal(
    from: { conversationId: string; userId: string; deviceId: string },
    envelope: Envelope,
  ): boolean {
    if (envelope.type !== 'call-signal') return false;
    const { callId, to, kind, payload } = envelope;
    if (
      callId === undefined ||
      to !== this.context.deviceId() ||
      kind === undefined ||
      payload === undefined
    ) {
      return true;
    }
    this.conversationOf.set(callId, from.conversationId);
    this.tell(this.signalListeners, {
      callId,
      conversationId: from.conversationId,
      fromDeviceId: from.deviceId,
      fromUserId: from.userId,
      kind,
      payload,
    });
    return true;
  }

  /** @internal Stops every heartbeat (the client closes); the server drops this device in time. */
  close(): void {
    this.closed = true;
    for (const callId of [...this.inCall.keys()]) this.stopHeartbeat(callId);
  }

  private joined(call: CallInfo): CallInfo {
    this.seen(call);
    if (this.closed) throw closedError();
    if (!this.inCall.has(call.id)) {
      const timer = setInterval(() => {
        this.heartbeat(call.id);
      }, CALL_HEARTBEAT_INTERVAL_MS);
      // A call never keeps a process alive by itself.
      unrefTimer(timer);
      this.inCall.set(call.id, { timer, call, unwatch: this.watchConversation(call) });
    }
    return call;
  }

  /**
   * Follows the status of the call's conversation: once this device is out of it (removed by a
   * commit, or left), it is out of the call too.
   */
  private watchConversation(call: CallInfo): () => void {
    let conversation: ReturnType<CallsContext['conversation']>;
    try {
      conversation = this.context.conversation(call.conversationId);
    } catch {
      // Not known here (yet): the live stream and the heartbeats still tell.
      return () => undefined;
    }
    return conversation.onEpochChange(() => {
      if (conversation.status !== 'active') this.droppedHere(call.id);
    });
  }

  /**
   * The server dropped this device from a call without the live stream saying so (removed from
   * the conversation, or the answer to a heartbeat): heartbeats stop and the listeners hear
   * LEFT for this device, then ENDED if no one is left, as the server published them (a call
   * the heartbeat finds ended: ENDED only).
   */
  private droppedHere(callId: string, answer?: CallInfo): void {
    const known = this.inCall.get(callId);
    if (known === undefined) return;
    this.stopHeartbeat(callId);
    const me = this.context.deviceId();
    const participants = (answer ?? known.call).participants.filter((p) => p.deviceId !== me);
    const call: CallInfo = {
      ...(answer ?? known.call),
      participants,
      endedAt: answer?.endedAt ?? (participants.length === 0 ? new Date() : null),
    };
    // A call ended for everyone (answer to a heartbeat) is only that.
    if (answer?.endedAt == null) {
      this.tell<CallEventInfo>(this.callListeners, { change: 'LEFT', deviceId: me, call });
    }
    if (call.endedAt !== null) {
      this.tell<CallEventInfo>(this.callListeners, {
        change: 'ENDED',
        deviceId: call.startedByDeviceId,
        call,
      });
    }
  }

  private heartbeat(callId: string): void {
    this.context.transport
      .request(CallHeartbeatDocument, { input: { deviceId: this.context.deviceId(), callId } })
      .then(({ callHeartbeat }) => {
        const call = this.seen(toCallInfo(callHeartbeat));
        if (
          call.endedAt !== null ||
          !call.participants.some((p) => p.deviceId === this.context.deviceId())
        ) {
          // Normally the live stream said so first (and the heartbeats stopped); if not, now.
          this.droppedHere(callId, call);
        }
      })
      .catch((error: unknown) => {
        // Out of the conversation, so out of the call: what the app is told is that it left
        // (the conversation's status says why), not an error.
        if (error instanceof NotAMemberError) {
          this.droppedHere(callId);
          return;
        }
        // A call that is over (or this device out of it) needs no more heartbeats; a network
        // failure is retried by the next beat.
        if (error instanceof ParleyError && !isRetryable(error)) this.stopHeartbeat(callId);
        this.context.report(error);
      });
  }

  private stopHeartbeat(callId: string): void {
    const known = this.inCall.get(callId);
    if (known === undefined) return;
    clearInterval(known.timer);
    known.unwatch();
    this.inCall.delete(callId);
  }

  private seen(call: CallInfo): CallInfo {
    this.conversationOf.set(call.id, call.conversationId);
    const known = this.inCall.get(call.id);
    if (known !== undefined) known.call = call;
    return call;
  }

  private tell<T>(listeners: ReadonlySet<(value: T) => void>, value: T): void {
    for (const listener of listeners) {
      try {
        listener(value);
      } catch (error) {
        this.context.report(error);
      }
    }
  }
}

function toCallInfo(call: CallFieldsFragment): CallInfo {
  return {
    id: call.id,
    conversationId: call.conversationId,
    media: call.media,
    startedByDeviceId: call.startedByDeviceId,
    startedAt: new Date(call.startedAt),
    endedAt: call.endedAt === null ? null : new Date(call.endedAt),
    participants: call.participants.map((participant) => ({
      deviceId: participant.deviceId,
      userId: participant.userId,
      joinedAt: new Date(participant.joinedAt),
    })),
  };
}
