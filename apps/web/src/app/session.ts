/**
 * The page's one Parley device: a ParleyClient over the OpenMLS engine and the sealed
 * IndexedDB store, the tab lock, and what the UI shows that the SDK does not keep (names,
 * typing, receipts, connection). React reads it through {@link Session.subscribe} and a version
 * number: any change bumps the version, and components read the client's current state.
 */
import {
  type Conversation,
  DeviceRevokedError,
  ForbiddenError,
  IndexedDbStateStore,
  LastAdminError,
  NetworkError,
  NotFoundError,
  type OutgoingMessage,
  ParleyClient,
  ParleyError,
  RemovedFromConversationError,
  StateDecryptionError,
  UnauthenticatedError,
} from '@parley/client';
import { CallController } from './call-session.js';
import { forgetProfileKey, profileKey } from './device-key.js';
import { lazyOpenMlsFactory } from './engine.js';
import { type TabLock, takeOver, tryLock } from './tab-lock.js';

/** Where the page is: which screen it shows. */
export type Phase =
  | { kind: 'starting' }
  | { kind: 'other-tab' }
  | { kind: 'moved' }
  | { kind: 'signed-out'; username: string; notice: string | null }
  | { kind: 'ready' };

/** The live connection as the header shows it. */
export type Connection =
  | { state: 'connecting' }
  | { state: 'online' }
  | { state: 'offline'; reason: string; retryAt: number };

/** A notice for the person: an error of something they did, or of the background. */
export interface Notice {
  id: number;
  text: string;
}

const PROFILE_KEY = 'parley.profile';
const TYPING_SHOWN_MS = 5_000;
const REDRAW_MS = 2_000;

/** The IndexedDB database of a profile's sealed state. */
export function stateDatabaseName(profile: string): string {
  return `parley-state:${profile}`;
}

/** A short name for this browser's device, as the device list shows it. */
function deviceName(): string {
  const agent = navigator.userAgent;
  const browser = /Edg\//.test(agent)
    ? 'Edge'
    : /Firefox\//.test(agent)
      ? 'Firefox'
      : /Chrome\//.test(agent)
        ? 'Chromium'
        : /Safari\//.test(agent)
          ? 'Safari'
          : 'Browser';
  const system = /Android/.test(agent)
    ? 'Android'
    : /iPhone|iPad/.test(agent)
      ? 'iOS'
      : /Mac OS/.test(agent)
        ? 'macOS'
        : /Windows/.test(agent)
          ? 'Windows'
          : /Linux/.test(agent)
            ? 'Linux'
            : 'web';
  return `${browser} on ${system}`;
}

/** The inner map of `map` at `key`, made on first use. */
function entry<V>(map: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let inner = map.get(key);
  if (inner === undefined) map.set(key, (inner = new Map<string, V>()));
  return inner;
}

/** A sentence for an error, as a person reads it. */
export function describeError(error: unknown): string {
  if (error instanceof LastAdminError)
    return 'A group needs an admin: make someone else admin first.';
  if (error instanceof ForbiddenError && error.details.reason === 'ADMIN_REQUIRED')
    return 'Only an admin of this conversation can do that.';
  if (error instanceof ForbiddenError && error.details.reason === 'DIRECT_CONVERSATION')
    return 'A direct conversation stays between its two people: start a group instead.';
  if (error instanceof RemovedFromConversationError)
    return 'You were removed from this conversation.';
  if (error instanceof NetworkError) return `Cannot reach the server. ${error.message}`;
  if (error instanceof ParleyError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** The page's Parley device and what the UI shows about it. */
export class Session {
  phase: Phase = { kind: 'starting' };
  client: ParleyClient | null = null;
  /** The calls of the signed-in device (rings, the current call). */
  calls: CallController | null = null;
  username = '';
  connection: Connection = { state: 'connecting' };
  notices: Notice[] = [];
  /** Usernames by user id (null: an app-JWT user without one). */
  readonly names = new Map<string, string | null>();
  /** Who is typing, per conversation: user id → until when (ms). */
  readonly typing = new Map<string, Map<string, number>>();
  /** How far each other user read, per conversation: user id → seq. */
  readonly receipts = new Map<string, Map<string, number>>();
  /** Outgoing messages the log has not shown back yet, per conversation, by id. */
  readonly outgoing = new Map<string, Map<string, OutgoingMessage>>();
  private version = 0;
  private readonly listeners = new Set<() => void>();
  private lock: TabLock | null = null;
  private unsubscribe: (() => void)[] = [];
  private readonly watched = new Set<string>();
  private noticeIds = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private redraw: ReturnType<typeof setInterval> | null = null;
  private signingOut = false;

  /** React's useSyncExternalStore subscription. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** React's snapshot: changes whenever anything shown changed. */
  readonly snapshot = (): number => this.version;

  /** Tells React that something changed. */
  changed(): void {
    this.version++;
    for (const listener of this.listeners) listener();
  }

  private go(phase: Phase): void {
    this.phase = phase;
    this.changed();
  }

  /** First thing on load: take the tab lock, then the saved device if there is one. */
  async start(): Promise<void> {
    this.lock = await tryLock(() => void this.handOver());
    if (this.lock === null) {
      this.go({ kind: 'other-tab' });
      return;
    }
    await this.resume();
  }

  /** "Use Parley here": the other tab closes its client and lets go, then this one goes on. */
  async useHere(): Promise<void> {
    this.go({ kind: 'starting' });
    this.lock = await takeOver(() => void this.handOver());
    await this.resume();
  }

  /** Another tab asked for the device: close the client (its state saved), then let go. */
  private async handOver(): Promise<void> {
    await this.stopClient();
    this.lock?.release();
    this.lock = null;
    this.go({ kind: 'moved' });
  }

  private async resume(): Promise<void> {
    const profile = localStorage.getItem(PROFILE_KEY);
    if (profile === null) {
      this.go({ kind: 'signed-out', username: '', notice: null });
      return;
    }
    let client: ParleyClient;
    try {
      client = await this.openClient(profile);
    } catch (error) {
      this.go({ kind: 'signed-out', username: profile, notice: describeError(error) });
      return;
    }
    if (client.deviceId === null || client.userId === null) {
      await client.close();
      this.go({ kind: 'signed-out', username: profile, notice: null });
      return;
    }
    this.client = client;
    this.username = profile;
    await this.enter();
  }

  private async openClient(profile: string): Promise<ParleyClient> {
    const store = new IndexedDbStateStore(stateDatabaseName(profile), await profileKey(profile));
    try {
      return await ParleyClient.open({
        url: location.origin,
        engine: lazyOpenMlsFactory,
        store,
        onError: (error) => {
          this.background(error);
        },
      });
    } catch (error) {
      if (error instanceof StateDecryptionError) {
        throw new Error(
          'The saved state of this browser cannot be opened (its key is gone): sign in to set up this browser again.',
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** Signs in (or up), registers this browser as a device if it is not one yet, and connects. */
  async signIn(username: string, password: string, create: boolean): Promise<void> {
    const profile = username.trim().toLowerCase();
    await this.stopClient();
    let client = await this.openClient(profile).catch(async (error: unknown) => {
      if (!(error instanceof Error && error.cause instanceof StateDecryptionError)) throw error;
      await this.wipe(profile);
      return this.openClient(profile);
    });
    try {
      const savedUserId = client.userId;
      if (create) await client.signUp(profile, password);
      else await client.signIn(profile, password);
      if (client.deviceId !== null && savedUserId !== null) {
        if (savedUserId !== client.userId) {
          // The saved device belongs to an account of the same name that no longer exists.
          await client.close();
          await this.wipe(profile);
          client = await this.openClient(profile);
          await client.signIn(profile, password);
        }
      }
      if (client.deviceId === null) await client.registerDevice(deviceName());
    } catch (error) {
      await client.close();
      throw error;
    }
    localStorage.setItem(PROFILE_KEY, profile);
    this.client = client;
    this.username = profile;
    await this.enter();
  }

  /** Wires the client's events to the UI, then connects (retrying while the server is down). */
  private async enter(): Promise<void> {
    const client = this.clientOrThrow();
    this.calls = new CallController(client, () => {
      this.changed();
    });
    this.unsubscribe = [
      client.onJoined((conversation) => {
        this.watch(conversation);
        this.changed();
      }),
      client.onMetadata(() => {
        this.changed();
      }),
      // Timer changes show in the header and the timeline; expired messages leave history.
      client.onTimerChanged(() => {
        this.changed();
      }),
      client.onExpired(() => {
        this.changed();
      }),
      client.onOutbox((message) => {
        const byId = entry(this.outgoing, message.conversationId);
        // A sent message the log already showed back (it may report `sent` after the echo) is
        // history's now, or gone by its timer: either way not the outbox's to show.
        const processed = client.conversations().find((c) => c.id === message.conversationId);
        if (message.state === 'sent' && (message.seq ?? 0) <= (processed?.processedSeq ?? 0)) {
          byId.delete(message.id);
        } else {
          byId.set(message.id, message);
        }
        this.changed();
      }),
      client.onConnection((change) => {
        this.connection =
          change.state === 'online'
            ? { state: 'online' }
            : {
                state: 'offline',
                reason: change.error.message,
                retryAt: Date.now() + change.retryInMs,
              };
        if (change.state === 'online') this.refreshConversations();
        this.changed();
      }),
      client.onTyping(({ conversationId, userId }) => {
        if (userId === client.userId) return;
        entry(this.typing, conversationId).set(userId, Date.now() + TYPING_SHOWN_MS);
        void this.learnNames([userId]);
        setTimeout(() => {
          this.changed();
        }, TYPING_SHOWN_MS + 50);
        this.changed();
      }),
      client.onReceipt(({ conversationId, userId, seq }) => {
        if (userId === client.userId) return;
        const byUser = entry(this.receipts, conversationId);
        byUser.set(userId, Math.max(seq, byUser.get(userId) ?? 0));
        void this.learnNames([userId]);
        this.changed();
      }),
    ];
    for (const conversation of client.conversations()) this.watch(conversation);
    // The SDK applies a RoleChangedEvent to `conversation.role` without telling anyone (no
    // listener for it yet): a redraw every 2 s shows it, and ends typing indicators on time.
    this.redraw = setInterval(() => {
      this.changed();
    }, REDRAW_MS);
    this.connection = { state: 'connecting' };
    this.go({ kind: 'ready' });
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = this.client;
    if (client === null) return;
    try {
      await client.connect();
      this.connection = { state: 'online' };
      this.refreshConversations();
      this.changed();
    } catch (error) {
      if (this.client !== client) return;
      if (error instanceof UnauthenticatedError || error instanceof DeviceRevokedError) {
        this.background(error);
        return;
      }
      // connect() gives up at once when the server is down; the SDK retries only once it was
      // connected, so the page retries the first connection itself.
      const delay = 3_000;
      this.connection = {
        state: 'offline',
        reason: describeError(error),
        retryAt: Date.now() + delay,
      };
      this.changed();
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        void this.connect();
      }, delay);
    }
  }

  /** Names of the senders, DM peers and members of every conversation. */
  private refreshConversations(): void {
    const client = this.client;
    if (client === null) return;
    const ids = new Set<string>();
    for (const conversation of client.conversations()) {
      if (conversation.peerUserId !== null) ids.add(conversation.peerUserId);
      for (const message of conversation.history()) {
        if (message.senderUserId !== null) ids.add(message.senderUserId);
      }
    }
    void this.learnNames([...ids]);
  }

  /** Follows a conversation's new messages (UI refresh, sender names) until it ends. */
  private watch(conversation: Conversation): void {
    if (this.watched.has(conversation.id)) return;
    this.watched.add(conversation.id);
    void (async () => {
      try {
        for await (const message of conversation.messages({ from: 'now' })) {
          if (message.senderUserId !== null) void this.learnNames([message.senderUserId]);
          this.typing.get(conversation.id)?.delete(message.senderUserId ?? '');
          if (message.own) this.outgoing.get(conversation.id)?.delete(message.id);
          this.changed();
        }
      } catch {
        // Removed, left or revoked: the conversation shows its status; nothing more comes.
      }
      this.watched.delete(conversation.id);
      this.changed();
    })();
  }

  /** Looks up usernames the page does not know yet. */
  async learnNames(userIds: string[]): Promise<void> {
    const client = this.client;
    const missing = userIds.filter((id) => !this.names.has(id));
    if (client === null || missing.length === 0) return;
    try {
      for (const [id, name] of await client.usernames(missing)) this.names.set(id, name);
      this.changed();
    } catch {
      // Shown as a short id until the next try (the server may be down).
    }
  }

  /** How the page names a user. */
  nameOf(userId: string | null): string {
    if (userId === null) return 'someone';
    if (userId === this.client?.userId) return 'you';
    return this.names.get(userId) ?? `user ${userId.slice(0, 8)}`;
  }

  /** How the page names a conversation. */
  titleOf(conversation: Conversation): string {
    const { name } = conversation.metadata;
    if (name !== null && name !== '') return name;
    if (conversation.kind === 'DIRECT') return this.nameOf(conversation.peerUserId);
    return 'Unnamed group';
  }

  /** Background failures: a signed-out or deleted device ends the session, others are shown. */
  private background(error: unknown): void {
    if (error instanceof UnauthenticatedError && this.signingOut) return;
    if (error instanceof UnauthenticatedError) {
      void this.endSession(
        'You were signed out: this session ended on the server (signed out everywhere, or expired). Sign in again to go on.',
        false,
      );
      return;
    }
    if (error instanceof DeviceRevokedError) {
      void this.endSession(
        'This browser’s device was deleted (from the device list, here or elsewhere). Its messages are gone; sign in to set it up again.',
        true,
      );
      return;
    }
    if (error instanceof NetworkError) return;
    this.notify(describeError(error));
  }

  private async endSession(notice: string, wipe: boolean): Promise<void> {
    if (this.client === null) return;
    const profile = this.username;
    await this.stopClient();
    if (wipe) await this.wipe(profile);
    this.go({ kind: 'signed-out', username: profile, notice });
  }

  /** Deletes a profile's sealed state and its key. */
  private async wipe(profile: string): Promise<void> {
    await new Promise<void>((resolve) => {
      const deleting = indexedDB.deleteDatabase(stateDatabaseName(profile));
      deleting.onsuccess =
        deleting.onerror =
        deleting.onblocked =
          () => {
            resolve();
          };
    });
    await forgetProfileKey(profile);
  }

  /** Shows a notice (dismissed by the person, or replaced by newer ones). */
  notify(text: string): void {
    this.notices = [...this.notices.slice(-2), { id: ++this.noticeIds, text }];
    this.changed();
  }

  /** Removes a notice. */
  dismiss(id: number): void {
    this.notices = this.notices.filter((notice) => notice.id !== id);
    this.changed();
  }

  /** Runs something the person asked for; a failure becomes a notice (and false). */
  async attempt(work: () => Promise<unknown>): Promise<boolean> {
    try {
      await work();
      return true;
    } catch (error) {
      if (error instanceof UnauthenticatedError || error instanceof DeviceRevokedError) {
        this.background(error);
      } else {
        this.notify(describeError(error));
      }
      return false;
    } finally {
      this.changed();
    }
  }

  /** Marks a conversation read (unread 0, a read receipt to the others). */
  async markRead(conversation: Conversation): Promise<void> {
    await conversation.markRead();
  }

  /** Signs out here (or everywhere): the device and its history stay for the next sign-in. */
  async signOut(everywhere: boolean): Promise<void> {
    const client = this.clientOrThrow();
    // The live connection ends with the revoked token while this runs: that is this sign-out,
    // not one from elsewhere.
    this.signingOut = true;
    try {
      if (everywhere) await client.signOutEverywhere();
      else await client.signOut();
      await this.endSession(everywhere ? 'Signed out on every device.' : 'Signed out.', false);
    } finally {
      this.signingOut = false;
    }
  }

  /** Deletes one of the user's devices; this browser's own ends the session here. */
  async deleteDevice(deviceId: string): Promise<void> {
    await this.clientOrThrow().deleteDevice(deviceId);
  }

  /** Finds users by username (comma or space separated); NotFoundError names the unknown one. */
  async findUsers(text: string): Promise<string[]> {
    const client = this.clientOrThrow();
    const names = text
      .split(/[\s,]+/)
      .map((name) => name.trim().replace(/^@/, ''))
      .filter((name) => name !== '');
    const ids: string[] = [];
    for (const name of names) {
      try {
        const user = await client.findUser(name);
        this.names.set(user.id, user.username);
        ids.push(user.id);
      } catch (error) {
        if (error instanceof NotFoundError) {
          throw new Error(`No user is called “${name}”.`, { cause: error });
        }
        throw error;
      }
    }
    return ids;
  }

  /** Who is typing in a conversation now (names). */
  typingIn(conversationId: string): string[] {
    const now = Date.now();
    return [...(this.typing.get(conversationId) ?? new Map<string, number>())]
      .filter(([, until]) => until > now)
      .map(([userId]) => this.nameOf(userId));
  }

  clientOrThrow(): ParleyClient {
    if (this.client === null) throw new Error('Not signed in');
    return this.client;
  }

  private async stopClient(): Promise<void> {
    // The signed-in screens need a client: none is shown while it closes.
    if (this.phase.kind === 'ready') this.phase = { kind: 'starting' };
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.redraw !== null) clearInterval(this.redraw);
    this.redraw = null;
    for (const unsubscribe of this.unsubscribe) unsubscribe();
    this.unsubscribe = [];
    this.calls?.close();
    this.calls = null;
    const client = this.client;
    this.client = null;
    this.watched.clear();
    this.typing.clear();
    this.receipts.clear();
    this.outgoing.clear();
    await client?.close().catch(() => undefined);
  }
}
