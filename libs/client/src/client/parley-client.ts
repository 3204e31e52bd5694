import { fromBase64, SerialQueue, toBase64 } from '@parley/protocol';
import type { MlsEngine, MlsEngineFactory } from '../engine/mls-engine.js';
import {
  BadInputError,
  closedError,
  DeviceRevokedError,
  DirectConversationExistsError,
  isRetryable,
  NetworkError,
  NotAMemberError,
  NotFoundError,
  ParleyError,
  RateLimitedError,
  UnauthenticatedError,
} from '../errors.js';
import {
  AcknowledgeWelcomeDocument,
  ConversationDocument,
  ConversationRostersDocument,
  ConversationsDocument,
  type ConversationsQuery,
  CreateConversationDocument,
  DeleteDeviceDocument,
  DevicesDocument,
  EventsDocument,
  type EventsSubscription,
  KeyPackageCountDocument,
  MeDocument,
  RegisterDeviceDocument,
  SignInDocument,
  SignOutDocument,
  SendEphemeralDocument,
  SignOutEverywhereDocument,
  SignUpDocument,
  UploadKeyPackagesDocument,
  UserByUsernameDocument,
  UsersByIdsDocument,
  WelcomesDocument,
} from '../graphql/generated.js';
import { GraphqlTransport } from '../transport/graphql-transport.js';
import { normalizeServerUrl } from '../transport/server-url.js';
import {
  type ClientState,
  type ConversationInfo,
  type ConversationStatus,
  defaultInfo,
  deserializeClientState,
  emptyClientState,
  MemoryStateStore,
  serializeClientState,
  type StateStore,
  type StoredMessage,
} from './client-state.js';
import {
  Conversation,
  type ExpiredMessages,
  type Progress,
  type TimerChange,
} from './conversation.js';
import { Calls } from '../calls/calls.js';
import { joinJoinable } from './external-join.js';
import { Outbox, type OutgoingMessage, retryDelay } from './outbox.js';
import { RosterSession, rosterPages } from './rosters.js';
import { type ReceiptSignal, SignalListeners, type TypingSignal } from './signals.js';

/** How a client is set up. */
export interface ParleyClientOptions {
  /**
   * The server: its base URL (http://127.0.0.1:4000) or GraphQL URL
   * (http://127.0.0.1:4000/graphql); see {@link normalizeServerUrl}.
   */
  url: string;
  /** The MLS engine to create or restore this device's MLS state with. */
  engine: MlsEngineFactory;
  /** Where state survives restarts (encrypted by the store); in memory if absent. */
  store?: StateStore;
  /** A WebSocket class where there is no global one (Node 20: `ws`). */
  webSocketImpl?: unknown;
  /** How many key packages to keep on the server; refilled when the server says they run low. */
  keyPackageTarget?: number;
  /**
   * Called with errors of the background work that nobody awaits (processing live events,
   * committing the removal of leavers, a live connection that ended for good). Connection drops
   * and reconnects are reported through {@link ParleyClient.onConnection} instead, and network
   * failures of background work not at all (that work is done again once the server is back).
   */
  onError?: (error: unknown) => void;
  /** How long one query or mutation may take before it fails with a NetworkError (30 s). */
  requestTimeoutMs?: number;
  /**
   * Whether `markRead()` tells the other members with a read receipt (default true). False:
   * this device sends none (it still hears the others').
   */
  readReceipts?: boolean;
  /**
   * How long connect() may take to open the live connection and catch up before it fails with a
   * NetworkError (60 s): a server that takes the socket but never answers cannot hang it.
   */
  connectTimeoutMs?: number;
}

/**
 * A change of the live connection: `offline` once per drop (not once per failed retry) with
 * why and when the next try is; `online` once connected (again), with how many log entries were
 * processed while catching up.
 */
export type ConnectionChange =
  | { state: 'offline'; error: ParleyError; retryInMs: number }
  | { state: 'online'; caughtUp: number; reconnected: boolean };

/** One device of the signed-in user, as {@link ParleyClient.devices} lists them. */
export interface DeviceInfo {
  id: string;
  name: string;
  createdAt: Date;
  /** Whether it is this client's device. */
  current: boolean;
}

/** Who this client is: the signed-in user and this device. */
export interface WhoAmI {
  userId: string;
  username: string | null;
  deviceId: string | null;
  identity: string | null;
}

const DEFAULT_KEY_PACKAGE_TARGET = 20;
const DEFAULT_CONNECT_TIMEOUT_MS = 60_000;
// How long close() lets a commit request on the wire (and its resends) finish.
const CLOSE_COMMIT_GRACE_MS = 5_000;
// How long startDirectConversation waits for the existing DM's Welcome before joining externally.
const WELCOME_WAIT_MS = 10_000;

type LiveEvent = EventsSubscription['events'];

/**
 * The Parley SDK's entry point: one device of one user. It keeps the device's key packages
 * topped up, holds one live subscription that resumes from per-conversation cursors after a
 * reconnect (nothing lost, nothing twice), joins conversations it is welcomed to, and saves its
 * state after every change so that a restarted client continues where it was.
 */
export class ParleyClient {
  private readonly transport: GraphqlTransport;
  private engineInstance: MlsEngine | null = null;
  private readonly conversationsById = new Map<string, Conversation>();
  private readonly joinedListeners = new Set<(conversation: Conversation) => void>();
  private readonly metadataListeners = new Set<(conversation: Conversation) => void>();
  private readonly timerListeners = new Set<(change: TimerChange) => void>();
  private readonly expiredListeners = new Set<(event: ExpiredMessages) => void>();
  private readonly signalListeners = new SignalListeners((error) => {
    this.report(error);
  });
  private readonly connectionListeners = new Set<(change: ConnectionChange) => void>();
  private readonly outboxQueue: Outbox;
  private stopLive: (() => void) | null = null;
  // The rosters read while the live subscription is up (null while it is not): see rosters.ts.
  private liveRosters: RosterSession | null = null;
  private reconnectAttempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  // Rejects the connect() under way (close() cuts it short).
  private abortConnect: ((error: ParleyError) => void) | null = null;
  private connection: 'idle' | 'online' | 'offline' | 'stopped' = 'idle';
  // Whether onError has heard that the token or the device is revoked (told once, not per task).
  private revocationReported = false;
  private closed = false;
  private closing: Promise<void> | null = null;
  private connecting: Promise<void> | null = null;
  private readonly saves = new SerialQueue();
  private readonly welcomes = new SerialQueue();
  private readonly knownUsernames = new Map<string, string | null>();
  /**
   * Calls of this device's conversations: start, join, leave, end, events, signalling, heartbeats
   * and the per-epoch media keys (see {@link Calls}).
   */
  readonly calls: Calls;

  private constructor(
    private readonly options: ParleyClientOptions,
    private readonly store: StateStore,
    private readonly state: ClientState,
  ) {
    this.transport = new GraphqlTransport({
      url: options.url,
      ...(state.token === null ? {} : { token: state.token }),
      ...(options.webSocketImpl === undefined ? {} : { webSocketImpl: options.webSocketImpl }),
      ...(options.requestTimeoutMs === undefined
        ? {}
        : { requestTimeoutMs: options.requestTimeoutMs }),
    });
    this.outboxQueue = new Outbox({
      transport: this.transport,
      deviceId: () => this.device().deviceId,
      records: () => this.state.outbox,
      conversation: (id) => this.conversationsById.get(id),
      save: () => this.save(),
      report: (error) => {
        this.report(error);
      },
    });
    this.calls = new Calls({
      transport: this.transport,
      deviceId: () => this.device().deviceId,
      identity: () => {
        if (this.state.identity === null)
          throw new ParleyError('NO_DEVICE', 'Register a device first');
        return this.state.identity;
      },
      conversation: (id) => this.conversation(id),
      report: (error) => {
        this.report(error);
      },
    });
  }

  /**
   * A client with the state its store holds (signed in and registered, if it was before).
   * Messages left pending by an earlier run go after the next {@link connect}.
   */
  static async open(options: ParleyClientOptions): Promise<ParleyClient> {
    options = { ...options, url: normalizeServerUrl(options.url) };
    const store = options.store ?? new MemoryStateStore();
    const saved = await store.load();
    const state = saved === undefined ? emptyClientState() : deserializeClientState(saved);
    const client = new ParleyClient(options, store, state);
    if (state.engineState !== null) {
      const engine = await options.engine.restore(state.engineState);
      if (engine.name !== state.engine) {
        throw new ParleyError(
          'WRONG_ENGINE',
          `The saved state belongs to the ${String(state.engine)} engine`,
        );
      }
      client.engineInstance = engine;
      for (const [id, record] of state.conversations) {
        client.adopt(id, record.groupId, record.cursor, record.history, record.status, record.info);
      }
    }
    return client;
  }

  /** The signed-in user's id. */
  get userId(): string | null {
    return this.state.userId;
  }

  /** This device's id, once registered. */
  get deviceId(): string | null {
    return this.state.deviceId;
  }

  /** This device's MLS identity, once registered. */
  get identity(): string | null {
    return this.state.identity;
  }

  /** Creates a user and signs in as it. */
  async signUp(username: string, password: string): Promise<void> {
    const { signUp } = await this.transport.request(SignUpDocument, {
      input: { username, password },
    });
    await this.useToken(signUp.token, signUp.user.id);
  }

  /** Signs in. */
  async signIn(username: string, password: string): Promise<void> {
    const { signIn } = await this.transport.request(SignInDocument, {
      input: { username, password },
    });
    await this.useToken(signIn.token, signIn.user.id);
  }

  /**
   * Signs out: the server revokes the token in use (on every instance), the live connection
   * stops, and the client forgets the token. The device and its conversations stay: sign in
   * again (same user) to go on.
   */
  async signOut(): Promise<void> {
    await this.transport.request(SignOutDocument, {});
    await this.forgetToken();
  }

  /**
   * Signs out everywhere: every token of the user issued until now is revoked, so each of the
   * user's clients loses its live connection (UnauthenticatedError, through `onError`) and its
   * next request fails. This client forgets its token as well.
   */
  async signOutEverywhere(): Promise<void> {
    await this.transport.request(SignOutEverywhereDocument, {});
    await this.forgetToken();
  }

  /** The signed-in user (with username, if it has one) and this device. */
  async me(): Promise<WhoAmI> {
    const { me } = await this.transport.request(MeDocument, {});
    return {
      userId: me.id,
      username: me.username ?? null,
      deviceId: this.state.deviceId,
      identity: this.state.identity,
    };
  }

  /** The signed-in user's devices, oldest first. */
  async devices(): Promise<DeviceInfo[]> {
    const { devices } = await this.transport.request(DevicesDocument, {});
    return devices.map((device) => ({
      id: device.id,
      name: device.name,
      createdAt: new Date(device.createdAt),
      current: device.id === this.state.deviceId,
    }));
  }

  /**
   * Deletes one of the user's devices; its conversations' members commit its removal. Deleting
   * this very device ends the client as revoked (live connection stopped, conversations closed
   * with DeviceRevokedError).
   */
  async deleteDevice(deviceId: string): Promise<void> {
    await this.transport.request(DeleteDeviceDocument, { deviceId });
    if (deviceId === this.state.deviceId) {
      this.stop(new DeviceRevokedError('DEVICE_REVOKED', 'This device was deleted'));
    }
  }

  /** A user's id by username (case-insensitive); NotFoundError if there is none. */
  async findUser(username: string): Promise<{ id: string; username: string }> {
    const { user } = await this.transport.request(UserByUsernameDocument, { username });
    return { id: user.id, username: user.username ?? username };
  }

  /** Usernames of users by id (app-JWT users have none); remembered for the client's lifetime. */
  async usernames(userIds: string[]): Promise<Map<string, string | null>> {
    const missing = [...new Set(userIds)].filter((id) => !this.knownUsernames.has(id));
    if (missing.length > 0) {
      const { users } = await this.transport.request(UsersByIdsDocument, { ids: missing });
      for (const user of users) this.knownUsernames.set(user.id, user.username);
    }
    return new Map(userIds.map((id) => [id, this.knownUsernames.get(id) ?? null]));
  }

  /** Registers this device: an MLS identity, a fresh engine, key packages and a last-resort one. */
  async registerDevice(name = 'device'): Promise<void> {
    if (this.state.deviceId !== null)
      throw new ParleyError('ALREADY_REGISTERED', 'This client already has a device');
    const { registerDevice } = await this.transport.request(RegisterDeviceDocument, {
      input: { name },
    });
    const engine = await this.options.engine.create(registerDevice.identity);
    this.engineInstance = engine;
    Object.assign(this.state, {
      deviceId: registerDevice.id,
      identity: registerDevice.identity,
      engine: engine.name,
    });
    const target = this.options.keyPackageTarget ?? DEFAULT_KEY_PACKAGE_TARGET;
    const keyPackages = await engine.generateKeyPackages(target);
    const lastResort = await engine.generateLastResortKeyPackage();
    await this.transport.request(UploadKeyPackagesDocument, {
      input: {
        deviceId: registerDevice.id,
        keyPackages: keyPackages.map(toBase64),
        ...(lastResort === null ? {} : { lastResort: toBase64(lastResort) }),
      },
    });
    await this.save();
    // Every conversation of the user, without another of its devices online (external commits);
    // what fails here is reported, and every sync() tries again.
    await this.joinExternally().catch((error: unknown) => {
      this.report(error);
    });
  }

  /**
   * Joins by external commit every conversation where this device's user has another device and
   * this one never was (see external-join.ts); resolves with those joined, after the onJoined
   * listeners heard of each. Runs in turn with the Welcome joins.
   */
  joinExternally(): Promise<Conversation[]> {
    const { engine, deviceId } = this.device();
    return this.welcomes.run(() =>
      joinJoinable({
        transport: this.transport,
        engine,
        deviceId,
        has: (id) => this.conversationsById.has(id),
        adopt: (id, groupId, cursor) => this.adopt(id, groupId, cursor),
        joined: async (conversation) => {
          await this.describeJoined(conversation);
          await this.save();
          for (const listener of this.joinedListeners) listener(conversation);
          await conversation.catchUp();
        },
        report: (error) => {
          this.report(error);
        },
      }),
    );
  }

  /** Uploads key packages until the server holds the target number again. */
  async topUpKeyPackages(): Promise<number> {
    const { engine, deviceId } = this.device();
    const { keyPackageCount } = await this.transport.request(KeyPackageCountDocument, { deviceId });
    const missing =
      (this.options.keyPackageTarget ?? DEFAULT_KEY_PACKAGE_TARGET) - keyPackageCount.available;
    if (missing <= 0) return 0;
    const keyPackages = await engine.generateKeyPackages(missing);
    await this.transport.request(UploadKeyPackagesDocument, {
      input: { deviceId, keyPackages: keyPackages.map(toBase64) },
    });
    await this.save();
    return missing;
  }

  /**
   * Opens the live subscription and catches up: joins pending Welcomes and reads every
   * conversation's log after its cursor, then sends the messages the outbox holds. Resolves once
   * caught up (a conversation this device was removed from only gets status 'removed'); rejects
   * when the server cannot be reached or refuses (nothing is left running then). Stays live
   * until close(), reconnecting by itself after a drop (see {@link onConnection}).
   */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    // One connection at a time: a second call (or the reconnect timer) shares the one under way.
    this.connecting ??= this.connectOnce().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connectOnce(): Promise<void> {
    // A connect() asked for while a reconnect waits for its turn goes now, in its place.
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const { deviceId } = this.device();
    if (this.stopLive !== null && this.connection === 'online') {
      await this.sync();
      return;
    }
    const caughtUp = await this.openLive(deviceId);
    const reconnected = this.connection === 'offline';
    this.connection = 'online';
    this.reconnectAttempt = 0;
    this.emitConnection({ state: 'online', caughtUp, reconnected });
    this.outboxQueue.resume();
    this.outboxQueue.wake();
  }

  /** Calls `listener` on every change of the live connection; returns an unsubscriber. */
  onConnection(listener: (change: ConnectionChange) => void): () => void {
    this.connectionListeners.add(listener);
    return () => this.connectionListeners.delete(listener);
  }

  /**
   * How many messages the outbox still has to send, texts and the metadata it re-sends on its
   * own alike: a short-lived process waits for 0 before it closes.
   */
  get pendingCount(): number {
    return this.state.outbox.filter((record) => record.state === 'pending').length;
  }

  /** Calls `listener` on every change of an outgoing message; returns an unsubscriber. */
  onOutbox(listener: (message: OutgoingMessage) => void): () => void {
    return this.outboxQueue.onChange(listener);
  }

  /**
   * Joins pending Welcomes and processes every conversation's log after its cursor; resolves
   * with how many log entries it processed. A conversation this device is no longer in gets
   * status 'removed'; a failure of one conversation (other than the network's or the device's)
   * goes to `onError`, not to the caller, so that the others keep working.
   */
  async sync(): Promise<number> {
    await this.joinWelcomes();
    await this.joinExternally();
    await this.checkRosters();
    const results = await Promise.allSettled(
      [...this.conversationsById.values()].map((conversation) => conversation.catchUp()),
    );
    let processed = 0;
    for (const result of results) {
      if (result.status === 'fulfilled') {
        processed += result.value;
      } else if (isConnectionFailure(result.reason)) {
        throw result.reason;
      } else {
        this.report(result.reason);
      }
    }
    return processed;
  }

  /**
   * Describes every listed conversation, and removes members who left or whose device was
   * deleted while nobody was there to remove them. Reads only the rosters that may have changed
   * since this live session read them (see rosters.ts), a page of consecutive ones at a time.
   */
  private async checkRosters(): Promise<void> {
    const session = this.liveRosters;
    const list = await this.listConversations();
    const due = new Map<string, { position: number; before: number | null }>();
    for (const [position, summary] of list.entries()) {
      const conversation = this.conversationsById.get(summary.id);
      if (conversation === undefined || conversation.status !== 'active') continue;
      if (conversation.describe(summary)) await conversation.persistOnly();
      if (session?.knows(summary.id, summary.epoch) === true) continue;
      due.set(summary.id, { position, before: session?.before(summary.id) ?? null });
    }
    const { deviceId } = this.device();
    const positions = [...due.values()].map((item) => item.position);
    for (const [first, last] of rosterPages(positions)) {
      const { conversations } = await this.transport.request(ConversationRostersDocument, {
        deviceId,
        first: last - first + 1,
        after: first === 0 ? null : (list[first - 1]?.cursor ?? null),
      });
      for (const roster of conversations) {
        const item = due.get(roster.id);
        if (item === undefined) continue;
        due.delete(roster.id);
        await this.checkRoster(roster, session, item.before);
      }
    }
    // A conversation joined between the reads shifts a page's end: the rosters it left out are
    // read one by one (one this device is no longer in is for catchUp() to find out).
    for (const [id, item] of due) {
      let roster;
      try {
        ({ conversation: roster } = await this.transport.request(ConversationDocument, {
          deviceId,
          conversationId: id,
        }));
      } catch (error) {
        if (error instanceof NotAMemberError || error instanceof NotFoundError) continue;
        throw error;
      }
      await this.checkRoster(roster, session, item.before);
    }
  }

  /**
   * Commits the removal of the roster's leaving members and of those it no longer lists; a
   * roster that asks for neither is kept by the live session until it changes.
   */
  private async checkRoster(
    roster: { id: string; epoch: number; members: { deviceId: string; leaving: boolean }[] },
    session: RosterSession | null,
    before: number | null,
  ): Promise<void> {
    const conversation = this.conversationsById.get(roster.id);
    if (conversation === undefined || conversation.status !== 'active') return;
    const leaving = roster.members
      .filter((member) => member.leaving)
      .map((member) => member.deviceId);
    if (leaving.length > 0) {
      conversation.removeDevices(leaving).catch((error: unknown) => {
        this.report(error);
      });
    }
    // Deleted devices are not listed at all (their seat waits for the removal commit).
    const listed = new Set(roster.members.map((member) => member.deviceId));
    const unlisted = (await conversation.members()).some((member) => !listed.has(member.deviceId));
    if (unlisted) {
      conversation.removeUnlisted(listed, roster.epoch).catch((error: unknown) => {
        this.report(error);
      });
    }
    if (leaving.length === 0 && !unlisted) session?.settle(roster.id, roster.epoch, before);
  }

  /** Every conversation the server lists for this device, page by page (a page is at most 100). */
  private async listConversations(): Promise<ConversationsQuery['conversations']> {
    const first = 100;
    const all: ConversationsQuery['conversations'] = [];
    let after: string | null = null;
    for (;;) {
      const { conversations }: ConversationsQuery = await this.transport.request(
        ConversationsDocument,
        { deviceId: this.device().deviceId, first, after },
      );
      all.push(...conversations);
      const last = conversations.at(-1);
      if (conversations.length < first || last === undefined) return all;
      after = last.cursor;
    }
  }

  /**
   * The conversations this device is in, and those it was removed from or left (see
   * `status`) until {@link forget} drops them.
   */
  conversations(): Conversation[] {
    return [...this.conversationsById.values()];
  }

  /** One conversation by id. */
  conversation(id: string): Conversation {
    const conversation = this.conversationsById.get(id);
    if (conversation === undefined)
      throw new NotFoundError('NOT_FOUND', `Not in conversation ${id}`);
    return conversation;
  }

  /**
   * Drops a conversation this device was removed from or left, with its history and outbox
   * messages; an active one must be left first.
   */
  async forget(id: string): Promise<void> {
    const conversation = this.conversation(id);
    if (conversation.status === 'active') {
      throw new BadInputError('STILL_A_MEMBER', `Leave conversation ${id} before forgetting it`);
    }
    this.conversationsById.delete(id);
    this.state.conversations.delete(id);
    this.outboxQueue.forget(id);
    await this.save();
  }

  /**
   * Calls `listener` for each conversation this device joins, from a Welcome or by external
   * commit; returns an unsubscriber.
   */
  onJoined(listener: (conversation: Conversation) => void): () => void {
    this.joinedListeners.add(listener);
    return () => this.joinedListeners.delete(listener);
  }

  /** Creates a group with every device of the users (and this user's other devices). */
  async createConversation(
    userIds: string[],
    onProgress?: (progress: Progress) => void,
  ): Promise<Conversation> {
    const { engine, deviceId } = this.device();
    const groupId = crypto.getRandomValues(new Uint8Array(32));
    const { groupInfo } = await engine.createGroup(groupId);
    const { createConversation } = await this.transport.request(CreateConversationDocument, {
      input: {
        deviceId,
        groupId: toBase64(groupId),
        kind: 'GROUP',
        ...(groupInfo === null
          ? { ciphersuite: engine.ciphersuite }
          : { groupInfo: toBase64(groupInfo) }),
      },
    });
    const conversation = this.adopt(createConversation.id, groupId, 0);
    conversation.describe(createConversation);
    await this.save();
    const others = [...new Set([...userIds, this.userIdOrThrow()])];
    await conversation.addUsers(others, onProgress);
    return conversation;
  }

  /**
   * The direct conversation with a user: the one this device is in, if any; else a new DIRECT
   * conversation with every device of both users. When the server already has one for the pair
   * (DirectConversationExistsError: both users started it at the same moment, or this device is
   * not in it yet), this device joins that one — by the Welcome that comes once its creator
   * added both users, or by external join — and returns it (NetworkError after `timeoutMs`).
   */
  async startDirectConversation(
    userId: string,
    options: { timeoutMs?: number } = {},
  ): Promise<Conversation> {
    const me = this.userIdOrThrow();
    if (userId === me) {
      throw new BadInputError('BAD_USER_INPUT', 'A direct conversation needs another user');
    }
    const existing = this.directWith(userId);
    if (existing !== undefined) return existing;
    const { engine, deviceId } = this.device();
    const groupId = crypto.getRandomValues(new Uint8Array(32));
    const { groupInfo } = await engine.createGroup(groupId);
    let created;
    try {
      ({ createConversation: created } = await this.transport.request(CreateConversationDocument, {
        input: {
          deviceId,
          groupId: toBase64(groupId),
          kind: 'DIRECT',
          peerUserId: userId,
          ...(groupInfo === null
            ? { ciphersuite: engine.ciphersuite }
            : { groupInfo: toBase64(groupInfo) }),
        },
      }));
    } catch (error) {
      if (!(error instanceof DirectConversationExistsError)) throw error;
      return this.awaitConversation(error.conversationId, options.timeoutMs ?? 60_000);
    }
    const conversation = this.adopt(created.id, groupId, 0);
    conversation.describe(created);
    await this.save();
    await conversation.addUsers([userId, me]);
    return conversation;
  }

  /** The active DIRECT conversation with a user that this device is in, if any. */
  private directWith(userId: string): Conversation | undefined {
    return [...this.conversationsById.values()].find(
      (conversation) =>
        conversation.status === 'active' &&
        conversation.kind === 'DIRECT' &&
        conversation.peerUserId === userId,
    );
  }

  /** Waits until this device is in a conversation (Welcome or external join), polling too. */
  private async awaitConversation(id: string, timeoutMs: number): Promise<Conversation> {
    const deadline = Date.now() + timeoutMs;
    const externalAfter = Date.now() + Math.min(WELCOME_WAIT_MS, timeoutMs / 2);
    for (;;) {
      const conversation = this.conversationsById.get(id);
      if (conversation !== undefined) {
        const { conversation: summary } = await this.transport.request(ConversationDocument, {
          deviceId: this.device().deviceId,
          conversationId: id,
        });
        if (conversation.describe(summary)) await conversation.persistOnly();
        return conversation;
      }
      if (this.closed) throw closedError();
      if (Date.now() > deadline) {
        throw new NetworkError(
          'NETWORK',
          `Conversation ${id} was not joined within ${Math.round(timeoutMs / 1000)} s`,
          { reason: 'timeout' },
        );
      }
      await this.joinWelcomes();
      // The Welcome comes once the creator added both users; a creator that never does (gone,
      // crashed) leaves the external join. Not at once: a join racing the creator's Add commit
      // would make it add this device a second time.
      if (!this.conversationsById.has(id) && Date.now() > externalAfter) {
        await this.joinExternally().catch((error: unknown) => {
          this.report(error);
        });
      }
      if (!this.conversationsById.has(id)) await new Promise((done) => setTimeout(done, 200));
    }
  }

  /**
   * Calls `listener` when a member device types in a conversation (a live signal, never stored:
   * a device offline then never hears it); returns an unsubscriber.
   */
  onTyping(listener: (signal: TypingSignal) => void): () => void {
    return this.signalListeners.onTyping(listener);
  }

  /**
   * Calls `listener` when a member device says it read a conversation up to `seq` (a live read
   * receipt, never stored); returns an unsubscriber.
   */
  onReceipt(listener: (signal: ReceiptSignal) => void): () => void {
    return this.signalListeners.onReceipt(listener);
  }

  /**
   * Sets a conversation's message timer: 0 turns it off, else 5–86,400 seconds (BadInputError
   * with code BAD_TIMER otherwise, before anything is sent). See
   * {@link Conversation.setMessageTimer}.
   */
  setMessageTimer(conversationId: string, seconds: number): Promise<{ seq: number }> {
    return this.conversation(conversationId).setMessageTimer(seconds);
  }

  /**
   * Calls `listener` for each change of a conversation's message timer this device decrypted and
   * checked (who set what, at which seq; also in the conversation's timeline as a message of type
   * `timer`); returns an unsubscriber. Forged changes never reach it: they go to `onError` as
   * ForgedEntryError.
   */
  onTimerChanged(listener: (change: TimerChange) => void): () => void {
    this.timerListeners.add(listener);
    return () => this.timerListeners.delete(listener);
  }

  /**
   * Calls `listener` when messages disappear by the timer: `seqs` this device had and has now
   * removed from memory and from its saved state, or `missed` ranges the server deleted before
   * this device read them; returns an unsubscriber.
   */
  onExpired(listener: (event: ExpiredMessages) => void): () => void {
    this.expiredListeners.add(listener);
    return () => this.expiredListeners.delete(listener);
  }

  /** Calls `listener` whenever a conversation's encrypted metadata changes; returns an unsubscriber. */
  onMetadata(listener: (conversation: Conversation) => void): () => void {
    this.metadataListeners.add(listener);
    return () => this.metadataListeners.delete(listener);
  }

  /**
   * Ends the client: a connect() under way and waiting sends reject with `ParleyError('CLOSED')`
   * (their messages stay pending in the saved state), message iterators end, the reconnect
   * timer, requests in flight and sockets stop, and the last save completes. Afterwards nothing
   * of the client keeps the process alive. Saved state stays.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.calls.close();
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.abortConnect?.(closedError());
    this.stopLive?.();
    this.stopLive = null;
    this.liveRosters = null;
    // A commit request on the wire gets its answer first (bounded): cut, an OpenMLS device would
    // lose a commit the server may have stored (COMMIT_LOST). The state that knows it is saved.
    const drained = await Promise.all(
      [...this.conversationsById.values()].map((conversation) =>
        conversation.drainCommits(CLOSE_COMMIT_GRACE_MS),
      ),
    );
    if (drained.some(Boolean)) await this.save().catch(() => undefined);
    const outbox = this.outboxQueue.close();
    for (const conversation of this.conversationsById.values()) conversation.close();
    await this.transport.shutdown();
    await outbox;
    await this.saves.idle();
  }

  private async onEvent(event: LiveEvent): Promise<void> {
    this.noteRosterEvent(event);
    switch (event.__typename) {
      case 'LogEntryEvent':
        await this.conversationsById.get(event.entry.conversationId)?.receive(event.entry);
        return;
      case 'WelcomeEvent':
        await this.joinWelcomes();
        return;
      case 'RosterEvent':
        // The commit itself arrives as a log entry. When this device was added (or created the
        // conversation), the event comes once its channel is live: reading the log now closes
        // the window between the change and that moment.
        // When it was removed, reading the log finds that out (NOT_A_MEMBER): status 'removed'.
        if (
          event.addedDeviceIds.includes(this.device().deviceId) ||
          event.removedDeviceIds.includes(this.device().deviceId)
        ) {
          await this.conversationsById.get(event.conversationId)?.catchUp();
        }
        return;
      case 'LeaveEvent':
        await this.conversationsById
          .get(event.conversationId)
          ?.removeDevices([event.leavingDeviceId]);
        return;
      case 'DeviceRevokedEvent':
        // A deleted device can do nothing more, but holds its leaf (and with it the group's
        // keys) until a commit removes it: as for a leaver, whoever commits first does it.
        await this.conversationsById
          .get(event.conversationId)
          ?.removeDevices([event.revokedDeviceId]);
        return;
      case 'JoinableConversationEvent':
        // A conversation of this user appeared that this device is not in: join it now.
        if (!this.conversationsById.has(event.conversationId)) await this.joinExternally();
        return;
      case 'KeyPackagesLowEvent':
        await this.topUpKeyPackages();
        return;
      case 'RoleChangedEvent':
        if (event.userId === this.state.userId) {
          await this.conversationsById.get(event.conversationId)?.roleChanged(event.role);
        }
        return;
      case 'ExpiredEvent':
        await this.conversationsById
          .get(event.conversationId)
          ?.receiveExpired(event.expiredFromSeq, event.expiredToSeq);
        return;
      case 'EphemeralEvent':
        await this.conversationsById
          .get(event.conversationId)
          ?.receiveEphemeral(event.senderDeviceId, event.message);
        return;
      case 'CallEvent':
        this.calls.receive(event);
        return;
      case 'SubscribedEvent':
        return;
    }
  }

  /**
   * What the live rosters learn from an event, as it arrives: which conversations the
   * subscription follows, and whose roster changed without a commit.
   */
  private noteRosterEvent(event: LiveEvent): void {
    const rosters = this.liveRosters;
    if (rosters === null) return;
    if (event.__typename === 'WelcomeEvent') rosters.follow(event.conversationId);
    if (
      event.__typename === 'RosterEvent' &&
      event.addedDeviceIds.includes(this.device().deviceId)
    ) {
      rosters.follow(event.conversationId);
    }
    if (event.__typename === 'LeaveEvent' || event.__typename === 'DeviceRevokedEvent') {
      rosters.changed(event.conversationId);
    }
  }

  /**
   * Kind, peer and role of a conversation just joined, before the listeners hear of it; on
   * failure it stays a GROUP until the next sync() says more.
   */
  private async describeJoined(conversation: Conversation): Promise<void> {
    await this.transport
      .request(ConversationDocument, {
        deviceId: this.device().deviceId,
        conversationId: conversation.id,
      })
      .then(({ conversation: summary }) => conversation.describe(summary))
      .catch((error: unknown) => {
        this.report(error);
      });
  }

  /** Joins every waiting Welcome, one at a time, and acknowledges each. */
  private joinWelcomes(): Promise<void> {
    const run = async () => {
      const { engine, deviceId } = this.device();
      const { welcomes } = await this.transport.request(WelcomesDocument, { deviceId });
      for (const welcome of welcomes) {
        if (!this.conversationsById.has(welcome.conversationId)) {
          let groupId: Uint8Array;
          try {
            ({ groupId } = await engine.joinFromWelcome(fromBase64(welcome.welcome)));
          } catch (error) {
            // One Welcome this engine cannot take must not stop the device: reported, kept on
            // the server (not acknowledged), and the others are joined.
            this.report(error);
            continue;
          }
          const conversation = this.adopt(welcome.conversationId, groupId, welcome.commitSeq);
          await this.describeJoined(conversation);
          await this.save();
          for (const listener of this.joinedListeners) listener(conversation);
          await conversation.catchUp();
        }
        await this.transport.request(AcknowledgeWelcomeDocument, {
          deviceId,
          welcomeId: welcome.id,
        });
      }
    };
    return this.welcomes.run(run);
  }

  /**
   * Opens the subscription and catches up; resolves with how many entries were processed.
   * Whatever fails before that (socket, catch-up) stops the subscription and rejects.
   */
  private openLive(deviceId: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let subscribed = false;
      // This subscription's rosters (see rosters.ts), from its SubscribedEvent until it ends.
      let rosters: RosterSession | null = null;
      const endRosters = () => {
        if (rosters !== null && this.liveRosters === rosters) this.liveRosters = null;
      };
      // An object, so that the compiler sees the handlers change it.
      const progress = { settled: false };
      const timeoutMs = this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
      const timer = setTimeout(() => {
        fail(
          new NetworkError(
            'NETWORK',
            `The server at ${this.transport.url} did not connect and catch up within ${Math.round(timeoutMs / 1000)} s`,
            { reason: 'timeout' },
          ),
        );
      }, timeoutMs);
      const fail = (error: unknown) => {
        endRosters();
        if (progress.settled) return;
        progress.settled = true;
        clearTimeout(timer);
        this.abortConnect = null;
        if (this.stopLive === stop) this.stopLive = null;
        stop();
        reject(error instanceof Error ? error : new ParleyError('NETWORK', String(error)));
      };
      this.abortConnect = fail;
      const stop = this.transport.subscribe(
        EventsDocument,
        { deviceId },
        {
          next: ({ events }) => {
            if (events.__typename === 'SubscribedEvent') {
              if (subscribed) return;
              subscribed = true;
              // Live from here: what changes a followed roster without a commit comes as events.
              rosters = new RosterSession(this.conversationsById.keys());
              this.liveRosters = rosters;
              this.sync().then((caughtUp) => {
                if (progress.settled) return;
                progress.settled = true;
                clearTimeout(timer);
                this.abortConnect = null;
                resolve(caughtUp);
              }, fail);
              return;
            }
            this.onEvent(events).catch((error: unknown) => {
              this.report(error);
            });
          },
          error: (error) => {
            endRosters();
            if (!progress.settled) {
              fail(error);
              return;
            }
            if (this.stopLive !== stop) return;
            this.stopLive = null;
            if (isTerminal(error)) this.stop(error);
            else this.dropped(error);
          },
          complete: () => {
            endRosters();
            if (!progress.settled) {
              fail(
                new NetworkError(
                  'NETWORK',
                  `The server at ${this.transport.url} ended the live connection`,
                ),
              );
              return;
            }
            if (this.stopLive !== stop) return;
            this.stopLive = null;
            this.dropped(
              new NetworkError('NETWORK', `The live connection to ${this.transport.url} ended`),
            );
          },
        },
      );
      // A subscription refused at once (closed transport) has settled already.
      if (!progress.settled) this.stopLive = stop;
    });
  }

  /** The live connection dropped: reported once, then retried with backoff until it is back. */
  private dropped(error: ParleyError): void {
    if (this.closed) return;
    const delay = this.nextDelay(error);
    if (this.connection === 'online') {
      this.connection = 'offline';
      this.emitConnection({ state: 'offline', error, retryInMs: delay });
    }
    this.scheduleReconnect(delay);
  }

  private scheduleReconnect(delay: number): void {
    if (this.closed || this.reconnectTimer !== null) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed) return;
      // A fresh socket; the SubscribedEvent then triggers the catch-up from the cursors.
      void this.transport
        .close()
        .then(() => this.connect())
        .catch((failure: unknown) => {
          if (this.closed) return;
          if (failure instanceof ParleyError && isTerminal(failure)) this.stop(failure);
          else this.scheduleReconnect(this.nextDelay(failure));
        });
    }, delay);
  }

  /** Exponential backoff with jitter, at least what a rate limit asks. */
  private nextDelay(error: unknown): number {
    this.reconnectAttempt += 1;
    return retryDelay(this.reconnectAttempt, error instanceof RateLimitedError ? error : undefined);
  }

  /** Calls each listener; one that throws goes to onError, the others still hear. */
  private emit<T>(listeners: ReadonlySet<(value: T) => void>, value: T): void {
    for (const listener of listeners) {
      try {
        listener(value);
      } catch (error) {
        this.report(error);
      }
    }
  }

  private emitConnection(change: ConnectionChange): void {
    for (const listener of this.connectionListeners) {
      try {
        listener(change);
      } catch (error) {
        this.report(error);
      }
    }
  }

  /**
   * The live connection ended for good: this device was deleted, or its token was revoked.
   * Reconnecting cannot help, so it stops; message iterators end with the same error.
   */
  private stop(error: ParleyError): void {
    this.connection = 'stopped';
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.stopLive?.();
    this.stopLive = null;
    this.liveRosters = null;
    this.report(error);
    for (const conversation of this.conversationsById.values()) conversation.close(error);
    void this.transport.close();
  }

  private async forgetToken(): Promise<void> {
    this.stopLive?.();
    this.stopLive = null;
    this.liveRosters = null;
    this.connection = 'idle';
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.transport.setToken(undefined);
    await this.transport.close();
    this.state.token = null;
    await this.save();
  }

  private adopt(
    id: string,
    groupId: Uint8Array,
    cursor: number,
    history: StoredMessage[] = [],
    status: ConversationStatus = 'active',
    info: ConversationInfo = defaultInfo(),
  ): Conversation {
    const conversation = new Conversation(
      {
        transport: this.transport,
        engine: this.device().engine,
        deviceId: this.device().deviceId,
        persist: (conversationId, seq, kept, now, known) => {
          // A conversation forgotten meanwhile stays forgotten.
          if (this.conversationsById.get(conversationId) !== conversation) return Promise.resolve();
          this.state.conversations.set(conversationId, {
            groupId,
            status: now,
            cursor: seq,
            history: kept,
            info: known,
          });
          return this.save();
        },
        send: (conversationId, text, metadata) =>
          this.outboxQueue.add(conversationId, text, metadata),
        metadataChanged: (changed) => {
          for (const listener of this.metadataListeners) {
            try {
              listener(changed);
            } catch (error) {
              this.report(error);
            }
          }
        },
        timerChanged: (change) => {
          this.emit(this.timerListeners, change);
        },
        expired: (event) => {
          this.emit(this.expiredListeners, event);
        },
        report: (error) => {
          this.report(error);
        },
        sendEphemeral: async (conversationId, ciphertext) => {
          // The engine state that used the key first: after a crash it is never used again.
          await this.save();
          await this.transport.request(SendEphemeralDocument, {
            input: {
              deviceId: this.device().deviceId,
              conversationId,
              message: toBase64(ciphertext),
            },
          });
        },
        readReceipts: this.options.readReceipts ?? true,
        // Call signals go to client.calls; typing and receipts to their listeners.
        signal: (from, envelope) =>
          this.calls.dispatchSignal(from, envelope) ||
          this.signalListeners.dispatch(from, envelope),
        outbox: (conversationId) => this.outboxQueue.list(conversationId),
        retry: (conversationId, messageId) => this.outboxQueue.retry(conversationId, messageId),
        discard: (conversationId, messageId) => this.outboxQueue.discard(conversationId, messageId),
      },
      id,
      groupId,
      cursor,
      history,
      status,
      info,
    );
    this.conversationsById.set(id, conversation);
    this.state.conversations.set(id, { groupId, status, cursor, history, info });
    return conversation;
  }

  private async useToken(token: string, userId: string): Promise<void> {
    this.revocationReported = false;
    this.transport.setToken(token);
    this.state.token = token;
    this.state.userId = userId;
    await this.save();
  }

  /** Saves the state; saves run one after another, each with the newest state. */
  private save(): Promise<void> {
    const run = async () => {
      if (this.engineInstance !== null)
        this.state.engineState = await this.engineInstance.saveState();
      await this.store.save(serializeClientState(this.state));
    };
    return this.saves.run(run);
  }

  private device(): { engine: MlsEngine; deviceId: string } {
    if (this.engineInstance === null || this.state.deviceId === null) {
      throw new ParleyError('NO_DEVICE', 'Register a device first');
    }
    return { engine: this.engineInstance, deviceId: this.state.deviceId };
  }

  private userIdOrThrow(): string {
    if (this.state.userId === null) throw new ParleyError('NOT_SIGNED_IN', 'Sign in first');
    return this.state.userId;
  }

  /**
   * Hands a failure of background work to `onError` — except those of the network (and of the
   * client closing): each outage already gets its one `offline` event, and the work is done
   * again on its own (the catch-up after reconnecting, the next live entry, the outbox's retry).
   */
  private report(error: unknown): void {
    if (isRetryable(error) || (error instanceof ParleyError && error.code === 'CLOSED')) return;
    // The live connection and any background request (an acknowledgement, a top-up) may each
    // meet the revoked token or device: the app hears it once.
    if (error instanceof ParleyError && isTerminal(error)) {
      if (this.revocationReported) return;
      this.revocationReported = true;
    }
    this.options.onError?.(error);
  }
}

/** Live errors after which reconnecting is pointless: the device is gone or the token revoked. */
function isTerminal(error: ParleyError): boolean {
  return error instanceof DeviceRevokedError || error instanceof UnauthenticatedError;
}

/** Failures of a catch-up that concern the whole connection, not one conversation. */
function isConnectionFailure(error: unknown): boolean {
  return (
    isRetryable(error) ||
    (error instanceof ParleyError && (isTerminal(error) || error.code === 'CLOSED'))
  );
}
