import { fromBase64, toBase64 } from '../bytes.js';
import type { MlsEngine, MlsEngineFactory } from '../engine/mls-engine.js';
import { DeviceRevokedError, ParleyError, UnauthenticatedError } from '../errors.js';
import {
  AcknowledgeWelcomeDocument,
  ConversationsDocument,
  CreateConversationDocument,
  EventsDocument,
  type EventsSubscription,
  KeyPackageCountDocument,
  RegisterDeviceDocument,
  SignInDocument,
  SignOutDocument,
  SignOutEverywhereDocument,
  SignUpDocument,
  UploadKeyPackagesDocument,
  UserByUsernameDocument,
  UsersByIdsDocument,
  WelcomesDocument,
} from '../graphql/generated.js';
import { GraphqlTransport } from '../transport/graphql-transport.js';
import {
  type ClientState,
  deserializeClientState,
  emptyClientState,
  MemoryStateStore,
  serializeClientState,
  type StateStore,
  type StoredMessage,
} from './client-state.js';
import { Conversation, type Progress } from './conversation.js';

/** How a client is set up. */
export interface ParleyClientOptions {
  /** The server's GraphQL URL, e.g. http://127.0.0.1:4000/graphql. */
  url: string;
  /** The MLS engine to create or restore this device's MLS state with. */
  engine: MlsEngineFactory;
  /** Where state survives restarts (encrypted by the store); in memory if absent. */
  store?: StateStore;
  /** A WebSocket class where there is no global one (Node 20: `ws`). */
  webSocketImpl?: unknown;
  /** How many key packages to keep on the server; refilled when the server says they run low. */
  keyPackageTarget?: number;
  /** Called with errors of the background work (live events, reconnects) that nobody awaits. */
  onError?: (error: unknown) => void;
}

const DEFAULT_KEY_PACKAGE_TARGET = 20;
const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 5000];

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
  private stopLive: (() => void) | null = null;
  private reconnectAttempt = 0;
  private closed = false;
  private saving: Promise<void> = Promise.resolve();
  private welcomes: Promise<void> = Promise.resolve();
  private readonly knownUsernames = new Map<string, string | null>();

  private constructor(
    private readonly options: ParleyClientOptions,
    private readonly store: StateStore,
    private readonly state: ClientState,
  ) {
    this.transport = new GraphqlTransport({
      url: options.url,
      ...(state.token === null ? {} : { token: state.token }),
      ...(options.webSocketImpl === undefined ? {} : { webSocketImpl: options.webSocketImpl }),
    });
  }

  /** A client with the state its store holds (signed in and registered, if it was before). */
  static async open(options: ParleyClientOptions): Promise<ParleyClient> {
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
        client.adopt(id, record.groupId, record.cursor, record.history);
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
   * conversation's log after its cursor. Resolves once caught up; stays live until close().
   */
  async connect(): Promise<void> {
    const { deviceId } = this.device();
    await new Promise<void>((resolve, reject) => {
      let subscribed = false;
      // Whether this subscription is still the client's: one stopped on purpose (sign-out)
      // reports its end, which must not start a reconnect.
      const current = () => this.stopLive === stop;
      const stop = this.transport.subscribe(
        EventsDocument,
        { deviceId },
        {
          next: ({ events }) => {
            if (events.__typename === 'SubscribedEvent') {
              subscribed = true;
              this.reconnectAttempt = 0;
              this.sync().then(resolve, reject);
              return;
            }
            this.onEvent(events).catch((error: unknown) => {
              this.report(error);
            });
          },
          error: (error) => {
            if (!subscribed) reject(error);
            else if (!current()) return;
            else if (isTerminal(error)) this.stop(error);
            else this.reconnect(error);
          },
          complete: () => {
            if (!subscribed) reject(new ParleyError('CLOSED', 'The server ended the subscription'));
            else if (current()) this.reconnect(null);
          },
        },
      );
      this.stopLive = stop;
    });
  }

  /** Joins pending Welcomes and processes every conversation's log after its cursor. */
  async sync(): Promise<void> {
    await this.joinWelcomes();
    // Members who left while nobody was there to remove them are removed now.
    const { conversations } = await this.transport.request(ConversationsDocument, {
      deviceId: this.device().deviceId,
    });
    for (const summary of conversations) {
      const leaving = summary.members
        .filter((member) => member.leaving)
        .map((member) => member.deviceId);
      const conversation = this.conversationsById.get(summary.id);
      if (leaving.length > 0 && conversation !== undefined) {
        conversation.removeDevices(leaving).catch((error: unknown) => {
          this.report(error);
        });
      }
      // Deleted devices are not listed at all (their seat waits for the removal commit).
      const listed = new Set(summary.members.map((member) => member.deviceId));
      if (
        conversation !== undefined &&
        (await conversation.members()).some((member) => !listed.has(member.deviceId))
      ) {
        conversation.removeUnlisted(listed, summary.epoch).catch((error: unknown) => {
          this.report(error);
        });
      }
    }
    await Promise.all(
      [...this.conversationsById.values()].map((conversation) => conversation.catchUp()),
    );
  }

  /** The conversations this device is in. */
  conversations(): Conversation[] {
    return [...this.conversationsById.values()];
  }

  /** One conversation by id. */
  conversation(id: string): Conversation {
    const conversation = this.conversationsById.get(id);
    if (conversation === undefined) throw new ParleyError('NOT_FOUND', `Not in conversation ${id}`);
    return conversation;
  }

  /** Calls `listener` for each conversation this device joins from a Welcome; returns an unsubscriber. */
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
    await this.save();
    const others = [...new Set([...userIds, this.userIdOrThrow()])];
    await conversation.addUsers(others, onProgress);
    return conversation;
  }

  /** Stops live events and background work; saved state stays. */
  async close(): Promise<void> {
    this.closed = true;
    this.stopLive?.();
    this.stopLive = null;
    for (const conversation of this.conversationsById.values()) conversation.close();
    await this.transport.close();
    await this.saving;
  }

  private async onEvent(event: LiveEvent): Promise<void> {
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
        if (event.addedDeviceIds.includes(this.device().deviceId)) {
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
      case 'KeyPackagesLowEvent':
        await this.topUpKeyPackages();
        return;
      case 'SubscribedEvent':
        return;
    }
  }

  /** Joins every waiting Welcome, one at a time, and acknowledges each. */
  private joinWelcomes(): Promise<void> {
    const run = async () => {
      const { engine, deviceId } = this.device();
      const { welcomes } = await this.transport.request(WelcomesDocument, { deviceId });
      for (const welcome of welcomes) {
        if (!this.conversationsById.has(welcome.conversationId)) {
          const { groupId } = await engine.joinFromWelcome(fromBase64(welcome.welcome));
          const conversation = this.adopt(welcome.conversationId, groupId, welcome.commitSeq);
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
    this.welcomes = this.welcomes.then(run, run);
    return this.welcomes;
  }

  /**
   * The live connection ended for good: this device was deleted, or its token was revoked.
   * Reconnecting cannot help, so it stops; message iterators end with the same error.
   */
  private stop(error: ParleyError): void {
    this.stopLive = null;
    this.report(error);
    for (const conversation of this.conversationsById.values()) conversation.close(error);
    void this.transport.close();
  }

  private async forgetToken(): Promise<void> {
    this.stopLive?.();
    this.stopLive = null;
    this.transport.setToken(undefined);
    await this.transport.close();
    this.state.token = null;
    await this.save();
  }

  private reconnect(error: unknown): void {
    this.stopLive = null;
    if (this.closed) return;
    if (error !== null) this.report(error);
    const delay =
      RECONNECT_DELAYS_MS[Math.min(this.reconnectAttempt, RECONNECT_DELAYS_MS.length - 1)] ?? 5000;
    this.reconnectAttempt += 1;
    setTimeout(() => {
      if (this.closed) return;
      // A fresh socket; the SubscribedEvent then triggers the catch-up from the cursors.
      void this.transport.close().then(() =>
        this.connect().catch((failure: unknown) => {
          this.reconnect(failure);
        }),
      );
    }, delay);
  }

  private adopt(
    id: string,
    groupId: Uint8Array,
    cursor: number,
    history: StoredMessage[] = [],
  ): Conversation {
    const conversation = new Conversation(
      {
        transport: this.transport,
        engine: this.device().engine,
        deviceId: this.device().deviceId,
        forget: (conversationId) => {
          this.conversationsById.delete(conversationId);
          this.state.conversations.delete(conversationId);
          return this.save();
        },
        persist: (conversationId, seq, kept) => {
          this.state.conversations.set(conversationId, { groupId, cursor: seq, history: kept });
          return this.save();
        },
      },
      id,
      groupId,
      cursor,
      history,
    );
    this.conversationsById.set(id, conversation);
    this.state.conversations.set(id, { groupId, cursor, history });
    return conversation;
  }

  private async useToken(token: string, userId: string): Promise<void> {
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
    this.saving = this.saving.then(run, run);
    return this.saving;
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

  private report(error: unknown): void {
    this.options.onError?.(error);
  }
}

/** Live errors after which reconnecting is pointless: the device is gone or the token revoked. */
function isTerminal(error: ParleyError): boolean {
  return error instanceof DeviceRevokedError || error instanceof UnauthenticatedError;
}
