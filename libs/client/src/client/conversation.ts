import { fromBase64, parseIdentity, SerialQueue, toBase64 } from '@parley/protocol';
import {
  decodeEnvelope,
  encodeEnvelope,
  type Envelope,
  type EnvelopeMetadataFields,
  InvalidEnvelopeError,
  receiptEnvelope,
  timerEnvelope,
  typingEnvelope,
} from '../content/envelope.js';
import type { CommitBundle, CommitSender, MlsEngine } from '../engine/mls-engine.js';
import {
  BadInputError,
  closedError,
  isRetryable,
  NetworkError,
  NotAMemberError,
  ParleyError,
  ServiceUnavailableError,
  StaleEpochError,
} from '../errors.js';
import {
  AcknowledgeDocument,
  ClaimKeyPackagesDocument,
  LeaveConversationDocument,
  type LogEntryFieldsFragment,
  ConversationDocument,
  MessagesDocument,
  SetMemberRoleDocument,
  SetMessageTimerDocument,
  SubmitCommitBundleDocument,
} from '../graphql/generated.js';
import type { GraphqlTransport } from '../transport/graphql-transport.js';
import {
  type ConversationInfo,
  type ConversationKind,
  type ConversationMetadata,
  type ConversationRole,
  type ConversationStatus,
  defaultInfo,
  type StoredMessage,
} from './client-state.js';
import { isEpochOutOfWindow, type OutboxConversation, type OutgoingMessage } from './outbox.js';
import { ReceiptCoalescer, type TypingSignal, TypingThrottle } from './signals.js';
import {
  checkMessageTimer,
  earliestExpiry,
  ExpiryAlarm,
  type ForgeryReason,
  messageExpiry,
  splitExpired,
  timerForgery,
} from './timers.js';

/** A decrypted message of a conversation, in log order. */
export interface ReceivedMessage {
  conversationId: string;
  /** Position in the conversation's log. */
  seq: number;
  senderUserId: string | null;
  senderDeviceId: string;
  /** Whether this device sent it. */
  own: boolean;
  /** Content type of the envelope (`text`, or a type this SDK version does not know). */
  type: string;
  /** Sender-chosen id of the message. */
  id: string;
  text: string | null;
  sentAt: Date;
  /**
   * When the message disappears from this device (memory and saved state): the earlier of the
   * server's expiry and storage time plus the timer this device authenticated; null: never.
   */
  expiresAt: Date | null;
  /**
   * For `type: 'timer'` (a change of the message timer, in the timeline where it happened):
   * the timer from here on, seconds (0 = off); null for other types.
   */
  timerSeconds: number | null;
}

/** Messages gone by the timer: removed from this device, or gone before it could read them. */
export interface ExpiredMessages {
  conversationId: string;
  /** Messages this device had (history, memory, saved state) and removed now. */
  seqs: number[];
  /**
   * Log ranges the server deleted by the timer before this device read them (offline too
   * long): it never had them, and never will.
   */
  missed: { fromSeq: number; toSeq: number }[];
}

/** A change of a conversation's message timer that this device decrypted and checked. */
export interface TimerChange {
  conversationId: string;
  /** The TIMER entry's position: messages after it expire by the new timer. */
  seq: number;
  /** Seconds, 0 = off. */
  seconds: number;
  /** Who set it, from the MLS credential (not from the server). */
  userId: string;
  deviceId: string;
  own: boolean;
}
export interface Member {
  userId: string;
  deviceId: string;
  identity: string;
}

/** Progress of long work (claiming key packages for hundreds of users, committing). */
export interface Progress {
  stage: 'claiming' | 'committing' | 'done';
  done: number;
  total: number;
}

/** Entries this device had not read were deleted by retention; it cannot decrypt what follows. */
export class HistoryGapError extends ParleyError {
  constructor(
    readonly fromSeq: number,
    readonly toSeq: number,
  ) {
    super(
      'HISTORY_GAP',
      `Log entries ${fromSeq}–${toSeq} were deleted before this device read them`,
    );
  }
}

/**
 * A log entry whose timer claim does not match what its MLS sender encrypted: the server edited
 * it, a member's device relayed another device's bytes as its own, or the server hid a timer
 * change in an ordinary entry (`reason`). Reported through `onError`; the forged claim never
 * changes the conversation's timer (a hidden change from the named device does apply).
 */
export class ForgedEntryError extends ParleyError {
  constructor(
    readonly conversationId: string,
    readonly seq: number,
    readonly reason: ForgeryReason,
    /** The device the server names as sender. */
    readonly claimedDeviceId: string,
    /** The device of the MLS credential that signed the content, if known. */
    readonly senderDeviceId: string | null,
  ) {
    super(
      'FORGED_ENTRY',
      `Log entry ${seq} of conversation ${conversationId} is forged (${reason}): the server's claim is not believed`,
      { conversationId, seq, reason, claimedDeviceId, senderDeviceId },
    );
  }
}

/** This device left the conversation. */
export class LeftConversationError extends ParleyError {
  constructor(conversationId: string) {
    super('LEFT', `This device left conversation ${conversationId}`);
  }
}

/** This device is no longer a member (removed by a commit). */
export class RemovedFromConversationError extends ParleyError {
  constructor(conversationId: string) {
    super('REMOVED', `This device was removed from conversation ${conversationId}`);
  }
}

/** What a conversation needs from its client. */
export interface ConversationContext {
  readonly transport: GraphqlTransport;
  readonly engine: MlsEngine;
  readonly deviceId: string;
  /** Records the new cursor, history and status, and saves the client's state. */
  persist(
    conversationId: string,
    cursor: number,
    history: StoredMessage[],
    status: ConversationStatus,
    info: ConversationInfo,
  ): Promise<void>;
  /** Hands a text (or, with `metadata`, a metadata envelope) to the client's durable outbox. */
  send(
    conversationId: string,
    text: string,
    metadata?: EnvelopeMetadataFields,
  ): Promise<{ seq: number; id: string }>;
  /** Tells the client's onMetadata listeners. */
  metadataChanged(conversation: Conversation): void;
  /** Tells the onTimerChanged listeners. */
  timerChanged(change: TimerChange): void;
  /** Tells the onExpired listeners. */
  expired(event: ExpiredMessages): void;
  /** Hands a failure of background work to the client's onError. */
  report(error: unknown): void;
  /**
   * Saves the engine state (the key just used is never used again) and sends an ephemeral
   * signal's ciphertext with sendEphemeral: to the live devices only, stored nowhere.
   */
  sendEphemeral(conversationId: string, ciphertext: Uint8Array): Promise<void>;
  /** Whether this device sends read receipts (the client option `readReceipts`, default true). */
  readonly readReceipts: boolean;
  /** Tells the onTyping/onReceipt listeners of a signal; false if the envelope is none. */
  signal(from: TypingSignal, envelope: Envelope): boolean;
  /** The outbox's pending and failed messages of the conversation. */
  outbox(conversationId: string): OutgoingMessage[];
  /** Sends an outbox message again. */
  retry(conversationId: string, id: string): Promise<{ seq: number; id: string }>;
  /** Drops an outbox message. */
  discard(conversationId: string, id: string): Promise<void>;
}

// Claims name at most this many users at once (the server's default limit is 100).
const USERS_PER_CLAIM = 100;
// A commit that keeps losing its epoch to others gives up after this many tries.
const COMMIT_ATTEMPTS = 8;
// A commit request left without an answer (connection dropped, server briefly unavailable) is
// sent again, same bytes, this many times at most, after 0.25, 0.5, 1 s: an engine that cannot
// keep a commit aside until the log shows it (OpenMLS) discards a commit whose `send` failed, and
// if the server had stored it that device could only rejoin.
const COMMIT_RESENDS = 3;
const COMMIT_RESEND_DELAY_MS = 250;
const PAGE = 200;
// An avatar is a small image: larger ones belong in an attachment, not in every member's state.
const MAX_AVATAR_BYTES = 64 * 1024;
// Decrypted messages kept locally per conversation (MLS cannot decrypt them again).
const HISTORY_LIMIT = 1000;
// A timer change refused because its epoch left the server's window is encrypted again at most
// this many times (each after catching up), as the outbox does for messages.
const TIMER_REENCRYPTIONS = 3;

/**
 * One conversation as this device sees it. Log entries are processed strictly in sequence
 * order, one at a time (a serial queue), so that commits and messages meet the MLS state in the
 * order the server fixed; the device's own changes run in the same queue.
 */
export class Conversation implements OutboxConversation {
  private readonly queue = new SerialQueue();
  private readonly typingThrottle = new TypingThrottle();
  private readonly inbox: ReceivedMessage[] = [];
  private readonly readers = new Set<() => void>();
  private failure: ParleyError | null = null;
  // The client closed: message iterators end (without an error).
  private ended = false;
  private currentStatus: ConversationStatus;
  // Commit requests on the wire (with their resends): close() lets them finish, within a bound,
  // because an engine that cannot keep a commit aside (OpenMLS) loses one whose send was cut.
  private readonly commitsInFlight = new Set<Promise<unknown>>();
  // Wakes a commit's resend wait: the client is closing for good.
  private readonly resendSleepers = new Set<() => void>();
  // close() has begun: no new commit request goes out; those on the wire may finish.
  private draining = false;
  // Wakes at the earliest expiry of a kept message.
  private readonly alarm = new ExpiryAlarm(() => {
    this.enqueue(() => this.purgeExpired()).catch((error: unknown) => {
      if (!this.ended) this.context.report(error);
    });
  });
  // Messages already due when the state was loaded: dropped from memory at once, from the saved
  // state (and told to onExpired) by the first purge.
  private dueAtOpen: number[] = [];
  // Told after each epoch change (media keys for calls follow the epoch).
  private readonly epochListeners = new Set<() => void>();
  // The last signal post (settled either way): the next one waits for it.
  private signalPosts: Promise<void> = Promise.resolve();

  /** @internal Made by ParleyClient. */
  constructor(
    private readonly context: ConversationContext,
    /** The server's conversation id. */
    readonly id: string,
    /** The MLS group id. */
    readonly groupId: Uint8Array,
    private cursor: number,
    history: StoredMessage[] = [],
    status: ConversationStatus = 'active',
    private readonly info: ConversationInfo = defaultInfo(),
  ) {
    this.currentStatus = status;
    if (status !== 'active') this.failure = this.statusError(status);
    const restored = history.map((stored) => ({
      ...stored,
      conversationId: id,
      sentAt: new Date(stored.sentAt),
      expiresAt:
        stored.expiresAt === undefined || stored.expiresAt === null
          ? null
          : new Date(stored.expiresAt),
      timerSeconds: stored.timerSeconds ?? null,
    }));
    // Timers survive restarts: what expired while the client was closed is never shown again.
    const { kept, expired } = splitExpired(restored, Date.now());
    this.inbox.push(...kept);
    this.dueAtOpen = expired.map((message) => message.seq);
    const last = this.info.lastMessage;
    const lastDue =
      last?.expiresAt !== undefined &&
      last.expiresAt !== null &&
      Date.parse(last.expiresAt) <= Date.now();
    if (this.dueAtOpen.length > 0 || lastDue) {
      this.forgetExpired(expired);
      this.alarm.set(Date.now());
    } else {
      this.scheduleExpiry();
    }
  }

  /**
   * The message timer in force, seconds (0 = off): from the newest TIMER entry this device
   * decrypted and checked, or — until it read one (it joined after the change) — the server's
   * claim, which the server also enforces by deleting expired messages.
   */
  get messageTimerSeconds(): number {
    return this.info.timerSeconds ?? this.info.serverTimerSeconds;
  }

  /** Whether {@link messageTimerSeconds} comes from a TIMER entry this device checked. */
  get messageTimerAuthenticated(): boolean {
    return this.info.timerSeconds !== null;
  }

  /**
   * Sets the message timer (0 = off, else 5–86,400 s; BadInputError with code BAD_TIMER before
   * anything is sent otherwise): a `timer` envelope, encrypted like a message, sent with
   * setMessageTimer so that the server stamps every later message with its expiry and members can
   * check who set what. Resolves with its log position once stored and applied here.
   *
   * Not through the durable outbox: a setting sent after a restart could land after a newer
   * change by another member and silently undo it. A failure is the caller's to see: network
   * failures are resent with the same bytes (at most 3 times, each request bounded by
   * `requestTimeoutMs`), an epoch that left the server's window is caught up with and encrypted
   * again; everything else rejects.
   */
  async setMessageTimer(seconds: number): Promise<{ seq: number }> {
    checkMessageTimer(seconds);
    const refusal = this.refusal();
    if (refusal !== null) throw refusal;
    for (let reencryptions = 0; ; reencryptions++) {
      const ciphertext = await this.encryptOutgoing(encodeEnvelope(timerEnvelope(seconds)));
      // The engine state that used the key is saved first: after a crash it is never used again.
      await this.persistOnly();
      let seq: number;
      try {
        seq = await this.submitTimer(toBase64(ciphertext), seconds);
      } catch (error) {
        if (isEpochOutOfWindow(error) && reencryptions < TIMER_REENCRYPTIONS) {
          await this.catchUp();
          continue;
        }
        if (error instanceof NotAMemberError) {
          await this.markRemoved();
          throw this.refusal() ?? error;
        }
        throw error;
      }
      // The entry comes back through the log: reading it applies the timer here too.
      await this.catchUp().catch((error: unknown) => {
        this.context.report(error);
      });
      return { seq };
    }
  }

  /** Sends a timer change, again (same bytes) while no answer comes, at most COMMIT_RESENDS times. */
  private async submitTimer(message: string, seconds: number): Promise<number> {
    for (let resend = 0; ; resend++) {
      if (this.draining) throw closedError();
      try {
        const { setMessageTimer } = await this.context.transport.request(SetMessageTimerDocument, {
          input: { deviceId: this.context.deviceId, conversationId: this.id, seconds, message },
        });
        return setMessageTimer.seq;
      } catch (error) {
        // Same bytes, same entry: a resend after a lost answer stores nothing twice.
        if (!isRetryable(error) || resend >= COMMIT_RESENDS) throw error;
        await this.resendWait(COMMIT_RESEND_DELAY_MS * 2 ** resend);
      }
    }
  }

  /** GROUP, or DIRECT (one per pair of users: both users' devices and nobody else). */
  get kind(): ConversationKind {
    return this.info.kind;
  }

  /** DIRECT: the other user's id; null for a GROUP. */
  get peerUserId(): string | null {
    return this.info.peerUserId;
  }

  /** This user's role (as the server last said; in a DIRECT conversation both are ADMIN). */
  get role(): ConversationRole {
    return this.info.role;
  }

  /**
   * The name, description and avatar, as the newest metadata entry of the log set them; every
   * field null until this device learns them (never undefined).
   */
  get metadata(): ConversationMetadata {
    const { metadata } = this.info;
    return {
      name: metadata.name,
      description: metadata.description,
      avatar: metadata.avatar === null ? null : Uint8Array.from(metadata.avatar),
    };
  }

  /** Text messages of other members this device received after the last {@link markRead}. */
  get unreadCount(): number {
    return this.info.unreadCount;
  }

  /** The newest text message (own or not), or null. */
  get lastMessage(): ReceivedMessage | null {
    const last = this.info.lastMessage;
    return last === null
      ? null
      : {
          ...last,
          conversationId: this.id,
          sentAt: new Date(last.sentAt),
          expiresAt:
            last.expiresAt === undefined || last.expiresAt === null
              ? null
              : new Date(last.expiresAt),
          timerSeconds: last.timerSeconds ?? null,
        };
  }

  /**
   * Marks everything received so far as read (unreadCount 0), saved with the state, and tells
   * the members live now with a read receipt "read up to seq N" (unless the client was made with
   * `readReceipts: false`). A receipt that cannot go out is reported to onError, not thrown: the
   * local read mark is what counts.
   */
  async markRead(): Promise<void> {
    if (this.info.unreadCount === 0 && this.info.readSeq >= this.cursor) return;
    this.info.readSeq = this.cursor;
    this.info.unreadCount = 0;
    await this.persistOnly();
    if (this.context.readReceipts && this.info.readSeq > 0) {
      await this.receipts.push(this.info.readSeq);
    }
  }

  // Receipts go out coalesced; one that fails is reported, never thrown (a closed client's not).
  private readonly receipts = new ReceiptCoalescer((seq) =>
    this.sendSignal(receiptEnvelope(seq)).catch((error: unknown) => {
      if (!this.ended) this.context.report(error);
    }),
  );

  /**
   * Tells the members live now that this user is typing: an ephemeral signal, never stored. At
   * most one per 3 s goes out (resolves false for the ones held back); call it on every key.
   */
  async typing(): Promise<boolean> {
    const refusal = this.refusal();
    if (refusal !== null) throw refusal;
    if (!this.typingThrottle.take()) return false;
    await this.sendSignal(typingEnvelope());
    return true;
  }

  /**
   * @internal Sends an envelope as an ephemeral signal (call signalling): encrypted for the
   * group, delivered to the live devices only, stored nowhere.
   */
  async sendEphemeralEnvelope(envelope: Envelope): Promise<void> {
    const refusal = this.refusal();
    if (refusal !== null) throw refusal;
    await this.sendSignal(envelope);
  }

  /**
   * Encrypts a signal envelope in the conversation's order and posts it with sendEphemeral once
   * the signals encrypted before it were posted (or failed): signals posted at once could reach
   * the server, and so the other members, out of order, and an engine that decrypts only a little
   * behind the newest generation it has seen (OpenMLS) loses those that were overtaken. A failed
   * post does not hold back the next; its caller gets its own error.
   */
  private sendSignal(envelope: Envelope): Promise<void> {
    // Both are taken in the same turn, so the posts follow the order of encryption.
    const encrypted = this.encryptOutgoing(encodeEnvelope(envelope));
    // Its failure is the caller's, through `posted`, even while an earlier post is on the wire.
    encrypted.catch(() => undefined);
    const posted = this.signalPosts.then(async () => {
      await this.context.sendEphemeral(this.id, await encrypted);
    });
    this.signalPosts = posted.catch(() => undefined);
    return posted;
  }

  /**
   * @internal An EphemeralEvent: decrypted in the conversation's order (so it meets the MLS
   * state the log built so far) and handed to the signal listeners; never history, unread count
   * or saved state. One that does not decrypt (an epoch this device has not reached, or keys
   * already gone) is dropped: a signal is best effort by nature.
   */
  receiveEphemeral(senderDeviceId: string, message: string): Promise<void> {
    return this.enqueue(async () => {
      if (this.failure !== null || senderDeviceId === this.context.deviceId) return;
      let processed;
      try {
        processed = await this.context.engine.processMessage(this.groupId, fromBase64(message));
      } catch {
        return;
      }
      if (processed.kind !== 'application' || processed.senderIdentity === null) return;
      let envelope: Envelope;
      try {
        envelope = decodeEnvelope(processed.plaintext);
      } catch {
        return;
      }
      // The MLS credential names the sender; a server that claims another device is not believed.
      const sender = parseIdentity(processed.senderIdentity);
      if (sender?.deviceId !== senderDeviceId) return;
      this.context.signal(
        { conversationId: this.id, userId: sender.userId, deviceId: senderDeviceId },
        envelope,
      );
    });
  }

  /**
   * Sets the name, description or avatar (fields absent from `patch` stay): an application
   * message of envelope type `metadata`, through the outbox like a text, so only members can
   * read it; every member (and everyone added later) applies the newest by log order. Resolves
   * once the server stored it.
   */
  setMetadata(patch: Partial<ConversationMetadata>): Promise<{ seq: number; id: string }> {
    const refusal = this.refusal();
    if (refusal !== null) return Promise.reject(refusal);
    const next = { ...this.info.metadata, ...patch };
    if (
      (next.name !== null && typeof next.name !== 'string') ||
      (next.description !== null && typeof next.description !== 'string') ||
      (next.avatar !== null && !(next.avatar instanceof Uint8Array))
    ) {
      return Promise.reject(
        new BadInputError('BAD_METADATA', 'name and description are strings, avatar bytes'),
      );
    }
    if (next.avatar !== null && next.avatar.length > MAX_AVATAR_BYTES) {
      return Promise.reject(
        new BadInputError(
          'BAD_METADATA',
          `The avatar is ${next.avatar.length} bytes; at most ${MAX_AVATAR_BYTES}`,
        ),
      );
    }
    return this.context.send(this.id, '', {
      name: next.name,
      description: next.description,
      avatar: next.avatar === null ? null : toBase64(next.avatar),
    });
  }

  /** The users and devices of the conversation with their roles, from the server. */
  async roster(): Promise<{ userId: string; deviceId: string; role: ConversationRole }[]> {
    const { conversation } = await this.context.transport.request(ConversationDocument, {
      deviceId: this.context.deviceId,
      conversationId: this.id,
    });
    this.describe(conversation);
    return conversation.members.map((member) => ({
      userId: member.userId,
      deviceId: member.deviceId,
      role: member.role,
    }));
  }

  /**
   * Gives a user a role (admins only: ForbiddenError with reason ADMIN_REQUIRED otherwise;
   * LastAdminError when no admin would remain; BadInputError in a DIRECT conversation).
   */
  async setRole(userId: string, role: ConversationRole): Promise<void> {
    const refusal = this.refusal();
    if (refusal !== null) throw refusal;
    const { setMemberRole } = await this.context.transport.request(SetMemberRoleDocument, {
      input: { deviceId: this.context.deviceId, conversationId: this.id, userId, role },
    });
    this.describe(setMemberRole);
    await this.persistOnly();
  }

  /**
   * @internal What the server says of the conversation: kind, peer, this user's role, and its
   * (unauthenticated) message timer.
   */
  describe(summary: {
    kind: ConversationKind;
    peerUserId?: string | null;
    role: ConversationRole;
    messageTimerSeconds?: number;
  }): boolean {
    const peerUserId = summary.peerUserId ?? null;
    const serverTimerSeconds = summary.messageTimerSeconds ?? this.info.serverTimerSeconds;
    if (
      this.info.kind === summary.kind &&
      this.info.peerUserId === peerUserId &&
      this.info.role === summary.role &&
      this.info.serverTimerSeconds === serverTimerSeconds
    ) {
      return false;
    }
    Object.assign(this.info, {
      kind: summary.kind,
      peerUserId,
      role: summary.role,
      serverTimerSeconds,
    });
    return true;
  }

  /** @internal A RoleChangedEvent for this user. */
  async roleChanged(role: ConversationRole): Promise<void> {
    if (this.info.role === role) return;
    this.info.role = role;
    await this.persistOnly();
  }

  /** @internal Saves what changed outside the log (kind, role, read position). */
  persistOnly(): Promise<void> {
    return this.enqueue(() =>
      this.context.persist(this.id, this.cursor, this.keptHistory(), this.currentStatus, this.info),
    );
  }

  /** The newest decrypted messages, kept across restarts (up to 1,000), oldest first. */
  history(): ReceivedMessage[] {
    return this.inbox.slice(-HISTORY_LIMIT);
  }

  /** Sequence number of the last log entry processed. */
  get processedSeq(): number {
    return this.cursor;
  }

  /**
   * Whether this device is in the conversation ('active'), was removed from it by another
   * member's commit ('removed') or left it ('left'). History stays readable in every status.
   */
  get status(): ConversationStatus {
    return this.currentStatus;
  }

  /**
   * Sends a text message through the durable outbox: saved as pending (then with its
   * ciphertext) before it goes on the wire, retried with the same bytes while the server cannot
   * be reached; resolves with its log position once the server stored it. Rejects with the
   * failure when the server refuses it for good, with `ParleyError('CLOSED')` when the client
   * closes first (the message then stays pending and goes after the next connect()), and at
   * once with RemovedFromConversationError / LeftConversationError.
   */
  send(text: string): Promise<{ seq: number; id: string }> {
    const refusal = this.refusal();
    if (refusal !== null) return Promise.reject(refusal);
    return this.context.send(this.id, text);
  }

  /** Messages handed to send that are pending or failed, oldest first. */
  outbox(): OutgoingMessage[] {
    return this.context.outbox(this.id);
  }

  /** Sends a failed outgoing message again; resolves like {@link send}. */
  retry(id: string): Promise<{ seq: number; id: string }> {
    const refusal = this.refusal();
    if (refusal !== null) return Promise.reject(refusal);
    return this.context.retry(this.id, id);
  }

  /** Drops a pending or failed outgoing message (one on the wire right now cannot be). */
  discard(id: string): Promise<void> {
    return this.context.discard(this.id, id);
  }

  /** @internal Why the conversation takes no more messages or changes, or null. */
  refusal(): ParleyError | null {
    return this.currentStatus === 'active' ? null : this.statusError(this.currentStatus);
  }

  /** @internal Encrypts an outgoing message in the conversation's order (outbox). */
  encryptOutgoing(plaintext: Uint8Array): Promise<Uint8Array> {
    return this.enqueue(async () => {
      this.throwIfFailed();
      return this.context.engine.encrypt(this.groupId, plaintext);
    });
  }

  /**
   * @internal The server no longer counts this device a member (a commit removed it, or its
   * seat is gone): the conversation ends for it, and the status is saved.
   */
  async markRemoved(): Promise<void> {
    if (this.currentStatus !== 'active') return;
    this.currentStatus = 'removed';
    this.fail(new RemovedFromConversationError(this.id));
    await this.saved();
    this.epochChanged();
  }

  /**
   * Decrypted messages in log order — with `from: 'start'` (the default) those already received
   * (the kept history) first, with `'now'` only new ones — as they arrive, until the iterator is
   * returned. Ends (without an error) when the client closes; with an error when history was
   * lost, this device was removed or left (RemovedFromConversationError,
   * LeftConversationError), or deleted or signed out everywhere.
   */
  async *messages(options: { from?: 'start' | 'now' } = {}): AsyncGenerator<ReceivedMessage> {
    // By seq, not by index: expired messages leave the inbox while an iterator is under way.
    let after = options.from === 'now' ? (this.inbox.at(-1)?.seq ?? 0) : -1;
    for (;;) {
      const message = this.firstAfter(after);
      if (message !== undefined) {
        after = message.seq;
        yield message;
        continue;
      }
      if (this.ended) return;
      if (this.failure !== null) throw this.failure;
      await new Promise<void>((resolve) => {
        this.readers.add(resolve);
      });
    }
  }

  /** The member devices, from this device's MLS state. */
  async members(): Promise<Member[]> {
    const identities = await this.context.engine.members(this.groupId);
    return identities.flatMap((identity) => {
      const parsed = parseIdentity(identity);
      return parsed === null
        ? []
        : [{ userId: parsed.userId, deviceId: parsed.deviceId, identity }];
    });
  }

  /**
   * Adds every device of the users (and the caller's own other devices) that is not in the
   * group yet, from key packages claimed from Parley; retries if another commit wins the epoch.
   */
  addUsers(userIds: string[], onProgress?: (progress: Progress) => void): Promise<void> {
    return this.guarded(async () => {
      const present = new Set((await this.members()).map((member) => member.identity));
      const keyPackages: Uint8Array[] = [];
      for (let i = 0; i < userIds.length; i += USERS_PER_CLAIM) {
        onProgress?.({ stage: 'claiming', done: i, total: userIds.length });
        const { claimKeyPackages } = await this.context.transport.request(
          ClaimKeyPackagesDocument,
          {
            input: {
              deviceId: this.context.deviceId,
              userIds: userIds.slice(i, i + USERS_PER_CLAIM),
            },
          },
        );
        for (const claimed of claimKeyPackages.keyPackages) {
          if (!present.has(claimed.identity)) keyPackages.push(fromBase64(claimed.keyPackage));
        }
      }
      onProgress?.({ stage: 'committing', done: userIds.length, total: userIds.length });
      if (keyPackages.length > 0) {
        await this.commitWithRetry((send) =>
          this.context.engine.addMembers(this.groupId, keyPackages, send),
        );
        this.resendMetadata();
      }
      onProgress?.({ stage: 'done', done: userIds.length, total: userIds.length });
    });
  }

  /**
   * Right after an Add: the metadata in force goes again (through the outbox, so in order after
   * the commit), for the joiners, who cannot read what came before they joined. Marked as a
   * re-send of the entry at metadataSeq, so that members who know a newer one ignore it.
   */
  private resendMetadata(): void {
    if (this.info.metadataSeq === 0) return;
    const { name, description, avatar } = this.info.metadata;
    this.context
      .send(this.id, '', {
        name,
        description,
        avatar: avatar === null ? null : toBase64(avatar),
        basedOn: this.info.metadataSeq,
      })
      .catch((error: unknown) => {
        this.context.report(error);
      });
  }

  /** Removes every device of the users; retries if another commit wins the epoch. */
  removeUsers(userIds: string[]): Promise<void> {
    const refusal = this.refusal();
    if (refusal !== null) return Promise.reject(refusal);
    const users = new Set(userIds);
    return this.removeWhere(
      (member) => users.has(member.userId) && member.deviceId !== this.context.deviceId,
    );
  }

  /**
   * Leaves: at once this device can no longer read or post, and the other members are told;
   * the next commit of any of them removes its leaf (MLS lets no member commit its own removal).
   */
  leave(): Promise<void> {
    return this.guarded(async () => {
      await this.context.transport.request(LeaveConversationDocument, {
        deviceId: this.context.deviceId,
        conversationId: this.id,
      });
      this.currentStatus = 'left';
      this.fail(new LeftConversationError(this.id));
      await this.saved();
      this.epochChanged();
    });
  }

  /** @internal Commits the removal of devices that asked to leave; whoever commits first wins. */
  removeDevices(deviceIds: string[]): Promise<void> {
    const leaving = new Set(deviceIds);
    return this.removeWhere((member) => leaving.has(member.deviceId));
  }

  /**
   * @internal Commits the removal of members that the server's roster of `epoch` no longer
   * shows: devices deleted while this one was offline (their seat is kept for the tree, but the
   * roster only lists devices that exist). Only at that very epoch: at another one the roster
   * could be missing members added since.
   */
  removeUnlisted(listed: ReadonlySet<string>, epoch: number): Promise<void> {
    return this.guarded(() =>
      this.commitWithRetry(async (send) => {
        if ((await this.context.engine.epoch(this.groupId)) !== BigInt(epoch)) return 'accepted';
        const identities = (await this.members())
          .filter((member) => !listed.has(member.deviceId))
          .map((member) => member.identity);
        return identities.length === 0
          ? 'accepted'
          : this.context.engine.removeMembers(this.groupId, identities, send);
      }),
    );
  }

  /** Commits Removes for the members that match, read afresh on every attempt. */
  private removeWhere(matches: (member: Member) => boolean): Promise<void> {
    return this.guarded(() =>
      this.commitWithRetry(async (send) => {
        const identities = (await this.members()).filter(matches).map((member) => member.identity);
        // Nobody left to remove (another member's commit did it first): nothing to commit.
        return identities.length === 0
          ? 'accepted'
          : this.context.engine.removeMembers(this.groupId, identities, send);
      }),
    );
  }

  /** Commits fresh keys for this device (post-compromise security). */
  updateKeys(): Promise<void> {
    return this.guarded(() =>
      this.commitWithRetry((send) => this.context.engine.update(this.groupId, send)),
    );
  }

  /** MLS-Exporter secret of the current epoch (e.g. media keys for calls). */
  exportSecret(label: string, context: Uint8Array, length: number): Promise<Uint8Array> {
    return this.enqueue(() =>
      this.context.engine.exportSecret(this.groupId, label, context, length),
    );
  }

  /**
   * Calls `listener` after every epoch change this device applies (a commit from the log, its
   * own commit accepted) and when it is removed; returns an unsubscriber. Call keys follow it.
   */
  onEpochChange(listener: () => void): () => void {
    this.epochListeners.add(listener);
    return () => this.epochListeners.delete(listener);
  }

  /**
   * The current epoch, its members (identities in leaf order) and MLS-Exporter secrets with an
   * empty context, read together in the conversation's order so that all belong to one epoch;
   * null once this device is no longer in the group.
   */
  epochSecrets(
    exports: readonly { label: string; length: number }[],
  ): Promise<{ epoch: bigint; members: string[]; secrets: Uint8Array[] } | null> {
    return this.enqueue(async () => {
      if (this.currentStatus !== 'active') return null;
      const { engine } = this.context;
      if (!(await engine.isMember(this.groupId))) return null;
      const epoch = await engine.epoch(this.groupId);
      const members = await engine.members(this.groupId);
      const secrets: Uint8Array[] = [];
      for (const { label, length } of exports) {
        secrets.push(await engine.exportSecret(this.groupId, label, new Uint8Array(0), length));
      }
      return { epoch, members, secrets };
    });
  }

  private epochChanged(): void {
    for (const listener of this.epochListeners) {
      try {
        listener();
      } catch (error) {
        this.context.report(error);
      }
    }
  }

  /**
   * Processes what the log holds after this device's cursor; resolves with how many entries it
   * processed. A conversation this device is no longer a member of gets status 'removed' (no
   * error: the client's other conversations go on).
   */
  catchUp(): Promise<number> {
    if (this.currentStatus !== 'active') return Promise.resolve(0);
    return this.enqueue(() => this.readLog());
  }

  /**
   * @internal An ExpiredEvent: entries the timer deleted before they reached this device. The
   * cursor moves past them (they were application messages, nothing MLS needs), and onExpired
   * hears of the range; one not next in line is read from the log instead.
   */
  receiveExpired(fromSeq: number, toSeq: number): Promise<void> {
    return this.enqueue(async () => {
      if (toSeq <= this.cursor || this.failure !== null) return;
      if (fromSeq > this.cursor + 1) {
        await this.readLog();
        return;
      }
      const missed = { fromSeq: Math.max(fromSeq, this.cursor + 1), toSeq };
      this.cursor = toSeq;
      await this.saved();
      this.context.expired({ conversationId: this.id, seqs: [], missed: [missed] });
    });
  }

  /** @internal A live log entry: processed if it is the next one, else the log is read. */
  receive(entry: LogEntryFieldsFragment): Promise<void> {
    return this.enqueue(async () => {
      if (entry.seq <= this.cursor) return;
      if (entry.seq === this.cursor + 1) {
        await this.apply(entry);
        await this.saved();
      } else {
        await this.readLog();
      }
    });
  }

  /**
   * Stops the message iterators: the client is closing, or (with that error) this device was
   * deleted or signed out.
   */
  close(error?: ParleyError): void {
    this.draining = true;
    this.alarm.cancel();
    this.receipts.cancel();
    for (const wake of [...this.resendSleepers]) wake();
    if (error === undefined) {
      this.ended = true;
      this.fail(new ParleyError('CLOSED', 'The client was closed'));
    } else {
      this.fail(error);
    }
  }

  /**
   * Reads and processes the log after the cursor; returns how many entries it processed. The
   * server answers NOT_A_MEMBER once a commit removed this device (its seat goes with the
   * commit, so the device never reads that commit): the conversation then ends as 'removed'.
   */
  private async readLog(): Promise<number> {
    let processed = 0;
    for (;;) {
      if (this.failure !== null) return processed;
      let messages;
      try {
        ({ messages } = await this.context.transport.request(MessagesDocument, {
          deviceId: this.context.deviceId,
          conversationId: this.id,
          after: this.cursor,
          first: PAGE,
        }));
      } catch (error) {
        if (error instanceof NotAMemberError) {
          await this.markRemoved();
          return processed;
        }
        throw error;
      }
      if (messages.gap !== null) {
        this.fail(new HistoryGapError(messages.gap.fromSeq, messages.gap.toSeq));
        return processed;
      }
      const before = this.cursor;
      for (const entry of messages.entries) await this.apply(entry);
      processed += messages.entries.length;
      // Ranges the timer deleted before this device read them: application messages only, so
      // the cursor moves past them as if processed (nothing there for MLS).
      const missed = messages.expired
        .filter((range) => range.toSeq > before)
        .map((range) => ({ fromSeq: Math.max(range.fromSeq, before + 1), toSeq: range.toSeq }));
      // An entry may have ended the conversation (removed): then nothing after it counts.
      const going = this.refusal() === null;
      if (going) for (const range of missed) this.cursor = Math.max(this.cursor, range.toSeq);
      if (this.cursor !== before) await this.saved();
      if (going && missed.length > 0) {
        this.context.expired({ conversationId: this.id, seqs: [], missed });
      }
      if (!messages.hasMore) return processed;
    }
  }

  private async apply(entry: LogEntryFieldsFragment): Promise<void> {
    if (this.failure !== null) return;
    // A device that joins by external commit cannot read the metadata sent before: one member
    // (the lowest device id among those who were in) sends it again after that commit.
    const watchJoin =
      entry.kind === 'COMMIT' &&
      this.info.metadataSeq > 0 &&
      entry.senderDeviceId !== this.context.deviceId;
    const before = watchJoin ? new Set((await this.members()).map((m) => m.deviceId)) : null;
    const processed = await this.context.engine.processMessage(
      this.groupId,
      fromBase64(entry.message),
    );
    this.cursor = entry.seq;
    if (processed.kind === 'commit' && processed.removedSelf) {
      await this.markRemoved();
      return;
    }
    if (processed.kind === 'commit' && !processed.own) this.epochChanged();
    if (before !== null && processed.kind === 'commit' && !before.has(entry.senderDeviceId)) {
      const stayed = (await this.members())
        .map((member) => member.deviceId)
        .filter((id) => before.has(id))
        .sort();
      if (stayed[0] === this.context.deviceId) this.resendMetadata();
    }
    if (processed.kind !== 'application') return;
    let envelope: Envelope | null = null;
    try {
      envelope = decodeEnvelope(processed.plaintext);
    } catch (error) {
      // A message this SDK cannot read is skipped, not fatal: the conversation goes on.
      if (!(error instanceof InvalidEnvelopeError)) throw error;
    }
    const sender =
      processed.senderIdentity === null ? null : parseIdentity(processed.senderIdentity);
    // The server's TIMER claims are checked against what the MLS sender encrypted.
    const forgery = timerForgery(entry, envelope, sender?.deviceId ?? null);
    if (forgery !== null) {
      this.context.report(
        new ForgedEntryError(
          this.id,
          entry.seq,
          forgery,
          entry.senderDeviceId,
          sender?.deviceId ?? null,
        ),
      );
      // A hidden change is still its member's (the credential names the device the server
      // names): it applies. Any other forged entry changes nothing and shows nowhere.
      if (forgery !== 'HIDDEN_TIMER') return;
    }
    if (envelope === null) return;
    if (envelope.type === 'timer') {
      if (sender === null || envelope.seconds === undefined) return;
      this.applyTimer(entry, envelope, envelope.seconds, sender, processed.own);
      return;
    }
    if (envelope.type === 'metadata') {
      this.applyMetadata(entry.seq, envelope.metadata);
      return;
    }
    // Signals travel with sendEphemeral; one a client wrongly stored in the log is no message.
    if (envelope.type === 'typing' || envelope.type === 'receipt') return;
    const expiresAt = messageExpiry(
      new Date(entry.createdAt),
      entry.expiresAt === null ? null : new Date(entry.expiresAt),
      this.info.timerSeconds,
    );
    if (expiresAt !== null && expiresAt.getTime() <= Date.now()) {
      // Already due (read late): never shown, never kept; the app hears it went.
      this.context.expired({
        conversationId: this.id,
        seqs: [],
        missed: [{ fromSeq: entry.seq, toSeq: entry.seq }],
      });
      return;
    }
    if (envelope.type === 'text') {
      this.info.lastMessage = {
        seq: entry.seq,
        senderUserId: sender?.userId ?? null,
        senderDeviceId: entry.senderDeviceId,
        own: processed.own,
        type: envelope.type,
        id: envelope.id,
        text: envelope.text ?? null,
        sentAt: envelope.sentAt,
        expiresAt: expiresAt?.toISOString() ?? null,
      };
      if (!processed.own && entry.seq > this.info.readSeq) this.info.unreadCount += 1;
    }
    this.deliver({
      conversationId: this.id,
      seq: entry.seq,
      senderUserId: sender?.userId ?? null,
      senderDeviceId: entry.senderDeviceId,
      own: processed.own,
      type: envelope.type,
      id: envelope.id,
      text: envelope.text ?? null,
      sentAt: new Date(envelope.sentAt),
      expiresAt,
      timerSeconds: null,
    });
    if (expiresAt !== null) this.scheduleExpiry();
  }

  /**
   * A checked timer change: in force from its seq on (messages after it expire by it), in the
   * timeline where it happened, and told to onTimerChanged.
   */
  private applyTimer(
    entry: LogEntryFieldsFragment,
    envelope: Envelope,
    seconds: number,
    sender: { userId: string; deviceId: string },
    own: boolean,
  ): void {
    this.info.timerSeconds = seconds;
    this.info.timerSeq = entry.seq;
    if (entry.kind === 'TIMER') this.info.serverTimerSeconds = seconds;
    this.deliver({
      conversationId: this.id,
      seq: entry.seq,
      senderUserId: sender.userId,
      senderDeviceId: sender.deviceId,
      own,
      type: 'timer',
      id: envelope.id,
      text: null,
      sentAt: new Date(envelope.sentAt),
      expiresAt: null,
      timerSeconds: seconds,
    });
    this.context.timerChanged({
      conversationId: this.id,
      seq: entry.seq,
      seconds,
      userId: sender.userId,
      deviceId: sender.deviceId,
      own,
    });
  }

  /** Removes what is due from memory and saved state, tells onExpired, waits for the next. */
  private async purgeExpired(): Promise<void> {
    const { kept, expired } = splitExpired(this.inbox, Date.now());
    const seqs = [...this.dueAtOpen, ...expired.map((message) => message.seq)];
    this.dueAtOpen = [];
    this.inbox.splice(0, this.inbox.length, ...kept);
    this.forgetExpired(expired);
    if (seqs.length > 0) {
      await this.context.persist(
        this.id,
        this.cursor,
        this.keptHistory(),
        this.currentStatus,
        this.info,
      );
      this.context.expired({ conversationId: this.id, seqs, missed: [] });
    }
    this.scheduleExpiry();
  }

  /** Unread count and last message without the expired messages. */
  private forgetExpired(expired: readonly ReceivedMessage[]): void {
    for (const message of expired) {
      if (
        !message.own &&
        message.type === 'text' &&
        message.seq > this.info.readSeq &&
        this.info.unreadCount > 0
      ) {
        this.info.unreadCount -= 1;
      }
    }
    const last = this.info.lastMessage;
    if (last === null) return;
    const lastDue =
      (last.expiresAt !== undefined &&
        last.expiresAt !== null &&
        Date.parse(last.expiresAt) <= Date.now()) ||
      expired.some((message) => message.seq === last.seq);
    if (!lastDue) return;
    const newest = this.inbox.findLast((message) => message.type === 'text');
    this.info.lastMessage =
      newest === undefined
        ? null
        : {
            seq: newest.seq,
            senderUserId: newest.senderUserId,
            senderDeviceId: newest.senderDeviceId,
            own: newest.own,
            type: newest.type,
            id: newest.id,
            text: newest.text,
            sentAt: newest.sentAt.toISOString(),
            expiresAt: newest.expiresAt?.toISOString() ?? null,
          };
  }

  private scheduleExpiry(): void {
    if (this.ended) return;
    this.alarm.set(earliestExpiry(this.inbox));
  }

  /** The first kept message after `seq` (the inbox is in seq order). */
  private firstAfter(seq: number): ReceivedMessage | undefined {
    let low = 0;
    let high = this.inbox.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if ((this.inbox[middle]?.seq ?? Infinity) > seq) high = middle;
      else low = middle + 1;
    }
    return this.inbox[low];
  }

  /** A metadata entry: the newest by log order wins; a re-send older than what is known not. */
  private applyMetadata(seq: number, fields: EnvelopeMetadataFields | undefined): void {
    if (fields === undefined || seq <= this.info.metadataSeq) return;
    if (fields.basedOn !== undefined && fields.basedOn < this.info.metadataSeq) return;
    let avatar: Uint8Array | null;
    try {
      avatar = fields.avatar === null ? null : fromBase64(fields.avatar);
    } catch {
      // Not base64: the entry is not one this SDK can apply, like an invalid envelope.
      return;
    }
    this.info.metadata = { name: fields.name, description: fields.description, avatar };
    this.info.metadataSeq = seq;
    this.context.metadataChanged(this);
  }

  /**
   * Makes a commit on the current epoch and submits it; when another commit won the epoch
   * (STALE_EPOCH), processes the log up to the winner and makes the commit again.
   */
  private async commitWithRetry(
    commit: (send: CommitSender) => Promise<'accepted' | 'rejected'>,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await this.readLog();
      this.throwIfFailed();
      // Set by the sender callback; an object, so that the compiler sees it can change.
      const verdict: { stale: StaleEpochError | null } = { stale: null };
      const outcome = await commit(async (bundle: CommitBundle) => {
        const input = {
          deviceId: this.context.deviceId,
          conversationId: this.id,
          commit: toBase64(bundle.commit),
          groupInfo: toBase64(bundle.groupInfo),
          ...(bundle.welcome === undefined ? {} : { welcome: toBase64(bundle.welcome) }),
        };
        // Nothing has gone out yet: a closing client starts no commit request.
        if (this.draining) throw closedError();
        const request = this.submitCommit(input, verdict);
        this.commitsInFlight.add(request);
        try {
          return await request;
        } finally {
          this.commitsInFlight.delete(request);
        }
      });
      if (outcome === 'accepted') {
        // The engine is in the new epoch already: call keys need not wait for the log's echo.
        this.epochChanged();
        // The commit comes back through the log; reading it moves the cursor past it.
        await this.readLog();
        return;
      }
      if (verdict.stale === null || attempt >= COMMIT_ATTEMPTS) {
        throw (
          verdict.stale ?? new ParleyError('COMMIT_REJECTED', 'The engine discarded the commit')
        );
      }
    }
  }

  /** Sends a commit bundle, again (same bytes) while no answer comes, at most COMMIT_RESENDS times. */
  private async submitCommit(
    input: {
      deviceId: string;
      conversationId: string;
      commit: string;
      groupInfo: string;
      welcome?: string;
    },
    verdict: { stale: StaleEpochError | null },
  ): Promise<'accepted' | 'rejected'> {
    for (let resend = 0; ; resend++) {
      try {
        await this.context.transport.request(SubmitCommitBundleDocument, { input });
        return 'accepted';
      } catch (error) {
        if (error instanceof StaleEpochError) {
          verdict.stale = error;
          return 'rejected';
        }
        // No answer: the server may have stored the commit. The same bytes again get its
        // verdict (a replay of the bundle that won its epoch is answered as the first time).
        const unanswered =
          error instanceof NetworkError || error instanceof ServiceUnavailableError;
        if (!unanswered || resend >= COMMIT_RESENDS) throw error;
        await this.resendWait(COMMIT_RESEND_DELAY_MS * 2 ** resend);
      }
    }
  }

  /** Waits before a resend; a client that closes for good ends the wait (CLOSED), timer and all. */
  private resendWait(ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const wake = () => {
        clearTimeout(timer);
        this.resendSleepers.delete(wake);
        reject(closedError());
      };
      const timer = setTimeout(() => {
        this.resendSleepers.delete(wake);
        resolve();
      }, ms);
      this.resendSleepers.add(wake);
    });
  }

  /**
   * @internal The client is closing: no new commit request goes out, and this resolves once the
   * ones on the wire (with their resends) have their answer, or after `ms` at most. Whether
   * there were any.
   */
  async drainCommits(ms: number): Promise<boolean> {
    this.draining = true;
    if (this.commitsInFlight.size === 0) return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([...this.commitsInFlight]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
    clearTimeout(timer);
    return true;
  }

  private keptHistory(): StoredMessage[] {
    return this.inbox
      .slice(-HISTORY_LIMIT)
      .map(({ conversationId: _, sentAt, expiresAt, timerSeconds, ...rest }) => ({
        ...rest,
        sentAt: sentAt.toISOString(),
        ...(expiresAt === null ? {} : { expiresAt: expiresAt.toISOString() }),
        ...(timerSeconds === null ? {} : { timerSeconds }),
      }));
  }

  private async saved(): Promise<void> {
    await this.context.persist(
      this.id,
      this.cursor,
      this.keptHistory(),
      this.currentStatus,
      this.info,
    );
    if (this.currentStatus !== 'active') return;
    // Best effort: the cursor only tells the server what may be deleted later.
    this.context.transport
      .request(AcknowledgeDocument, {
        deviceId: this.context.deviceId,
        conversationId: this.id,
        seq: this.cursor,
      })
      .catch(() => undefined);
  }

  private deliver(message: ReceivedMessage): void {
    this.inbox.push(message);
    this.wake();
  }

  private fail(error: ParleyError): void {
    this.failure ??= error;
    this.wake();
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }

  private wake(): void {
    for (const resolve of this.readers) resolve();
    this.readers.clear();
  }

  private statusError(status: ConversationStatus): ParleyError {
    return status === 'left'
      ? new LeftConversationError(this.id)
      : new RemovedFromConversationError(this.id);
  }

  /** Queues a change of the group; refused at once when this device is no longer in it. */
  private guarded<T>(work: () => Promise<T>): Promise<T> {
    const refusal = this.refusal();
    if (refusal !== null) return Promise.reject(refusal);
    return this.enqueue(async () => {
      this.throwIfFailed();
      return work();
    });
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    // The queue goes on after a failed task; the failure reaches whoever awaited that task.
    return this.queue.run(work);
  }
}
