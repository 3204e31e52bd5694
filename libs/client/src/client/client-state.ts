import { fromBase64, toBase64 } from '@parley/protocol';
import type { EnvelopeMetadataFields } from '../content/envelope.js';

/** Where the SDK keeps its state between runs; implementations encrypt it at rest. */
export interface StateStore {
  /** The saved state, or undefined before the first save. */
  load(): Promise<Uint8Array | undefined>;
  /** Replaces the saved state (atomically: a crash leaves the old or the new one). */
  save(state: Uint8Array): Promise<void>;
}

/** A StateStore that forgets everything when the process ends (tests, throwaway clients). */
export class MemoryStateStore implements StateStore {
  private state: Uint8Array | undefined;

  load(): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.state);
  }

  save(state: Uint8Array): Promise<void> {
    this.state = state;
    return Promise.resolve();
  }
}

/** A decrypted message as kept in the local history (MLS cannot decrypt it a second time). */
export interface StoredMessage {
  seq: number;
  senderUserId: string | null;
  senderDeviceId: string;
  own: boolean;
  type: string;
  id: string;
  text: string | null;
  sentAt: string;
  /** When the message disappears (ISO); absent or null: it does not. */
  expiresAt?: string | null;
  /** For `type: 'timer'`: the timer it set, seconds (0 = off). */
  timerSeconds?: number;
}

/** Whether this device is in a conversation, was removed from it, or left it. */
export type ConversationStatus = 'active' | 'removed' | 'left';

/** A one-to-one conversation (one per pair of users) or a group. */
export type ConversationKind = 'GROUP' | 'DIRECT';

/** A user's role in a conversation, kept by the server (visible metadata, like the roster). */
export type ConversationRole = 'ADMIN' | 'MEMBER';

/**
 * A conversation's name, description and avatar: they travel only inside MLS (an application
 * message of envelope type `metadata`), never in anything the server can read. `null` until set.
 */
export interface ConversationMetadata {
  name: string | null;
  description: string | null;
  avatar: Uint8Array | null;
}

/** Metadata nobody set yet: every field null (never undefined). */
export function emptyMetadata(): ConversationMetadata {
  return { name: null, description: null, avatar: null };
}

/** What a client remembers of one conversation. */
export interface ConversationRecord {
  groupId: Uint8Array;
  status: ConversationStatus;
  /** Everything up to here is processed. */
  cursor: number;
  /** The newest decrypted messages, oldest first. */
  history: StoredMessage[];
  /** What the SDK knows beyond the MLS state: kind, role, metadata, read position. */
  info: ConversationInfo;
}

/** A conversation's kind, role, encrypted metadata and read position (sealed with the state). */
export interface ConversationInfo {
  kind: ConversationKind;
  /** DIRECT: the other user. */
  peerUserId: string | null;
  role: ConversationRole;
  metadata: ConversationMetadata;
  /** Log position of the metadata entry in force (0: none yet). */
  metadataSeq: number;
  /** Messages up to here are read. */
  readSeq: number;
  /** Text messages of others after readSeq. */
  unreadCount: number;
  /** The newest text message, own or not. */
  lastMessage: StoredMessage | null;
  /**
   * The message timer in force, seconds (0 = off), from the newest TIMER entry this device
   * decrypted and checked; null until it read one (it then goes by the server's claim).
   */
  timerSeconds: number | null;
  /** Log position of that TIMER entry (0: none yet). */
  timerSeq: number;
  /** The timer the server claims (Conversation.messageTimerSeconds), unauthenticated. */
  serverTimerSeconds: number;
}

/** What a conversation starts with before the server or the log said more. */
export function defaultInfo(): ConversationInfo {
  return {
    kind: 'GROUP',
    peerUserId: null,
    role: 'MEMBER',
    metadata: emptyMetadata(),
    metadataSeq: 0,
    readSeq: 0,
    unreadCount: 0,
    lastMessage: null,
    timerSeconds: null,
    timerSeq: 0,
    serverTimerSeconds: 0,
  };
}

/** A failure as saved with a failed outgoing message. */
export interface SavedError {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

/**
 * A message handed to `send` that the server has not accepted yet (pending), or refused for good
 * (failed). Its ciphertext, once made, is kept and sent again as it is: the server answers the
 * same bytes with the same entry, so a retry never stores a message twice.
 */
export interface OutboxRecord {
  conversationId: string;
  /** The envelope's id. */
  id: string;
  text: string;
  /** The envelope's type: `text` when absent (records saved before metadata existed). */
  type?: 'text' | 'metadata';
  /** For `type: 'metadata'`: the envelope's metadata (avatar in base64) and what it re-sends. */
  metadata?: EnvelopeMetadataFields;
  /** When it was handed to send (ISO), also the envelope's `sentAt`. */
  createdAt: string;
  state: 'pending' | 'failed';
  /** The PrivateMessage, once encrypted (saved together with the engine state that made it). */
  ciphertext: Uint8Array | null;
  error: SavedError | null;
}

/** Everything a client must remember to continue after a restart. */
export interface ClientState {
  token: string | null;
  userId: string | null;
  deviceId: string | null;
  identity: string | null;
  engine: string | null;
  engineState: Uint8Array | null;
  conversations: Map<string, ConversationRecord>;
  /** Outgoing messages not yet accepted or failed for good, oldest first. */
  outbox: OutboxRecord[];
}

/** A client that has not signed in yet. */
export function emptyClientState(): ClientState {
  return {
    token: null,
    userId: null,
    deviceId: null,
    identity: null,
    engine: null,
    engineState: null,
    conversations: new Map(),
    outbox: [],
  };
}

interface SerializedOutboxRecord extends Omit<OutboxRecord, 'ciphertext'> {
  ciphertext: string | null;
}

interface SerializedInfo extends Omit<
  ConversationInfo,
  'metadata' | 'timerSeconds' | 'timerSeq' | 'serverTimerSeconds'
> {
  metadata: { name: string | null; description: string | null; avatar: string | null };
  timerSeconds?: number | null;
  timerSeq?: number;
  serverTimerSeconds?: number;
}

// Version 1 had no conversation status (every conversation was active) and no outbox; version 2
// no conversation info (kind, role, metadata, read position); version 3 no message timers
// (the timer fields of info, messages' expiresAt): all still load.
interface SerializedState {
  version: 4;
  token: string | null;
  userId: string | null;
  deviceId: string | null;
  identity: string | null;
  engine: string | null;
  engineState: string | null;
  conversations: Record<
    string,
    {
      groupId: string;
      status?: ConversationStatus;
      cursor: number;
      history: StoredMessage[];
      info?: SerializedInfo;
    }
  >;
  outbox?: SerializedOutboxRecord[];
}

/** State to bytes (JSON), for a StateStore. */
export function serializeClientState(state: ClientState): Uint8Array {
  const serialized: SerializedState = {
    version: 4,
    token: state.token,
    userId: state.userId,
    deviceId: state.deviceId,
    identity: state.identity,
    engine: state.engine,
    engineState: state.engineState === null ? null : toBase64(state.engineState),
    conversations: Object.fromEntries(
      [...state.conversations].map(([id, record]) => [
        id,
        {
          groupId: toBase64(record.groupId),
          status: record.status,
          cursor: record.cursor,
          history: record.history,
          info: {
            ...record.info,
            metadata: {
              ...record.info.metadata,
              avatar:
                record.info.metadata.avatar === null ? null : toBase64(record.info.metadata.avatar),
            },
          },
        },
      ]),
    ),
    outbox: state.outbox.map((record) => ({
      ...record,
      ciphertext: record.ciphertext === null ? null : toBase64(record.ciphertext),
    })),
  };
  return new TextEncoder().encode(JSON.stringify(serialized));
}

/** Bytes from a StateStore back to state. */
export function deserializeClientState(bytes: Uint8Array): ClientState {
  const parsed = JSON.parse(new TextDecoder().decode(bytes)) as Omit<SerializedState, 'version'> & {
    version: unknown;
  };
  if (![1, 2, 3, 4].includes(parsed.version as number)) {
    throw new Error(`Unknown client state version ${String(parsed.version)}`);
  }
  return {
    token: parsed.token,
    userId: parsed.userId,
    deviceId: parsed.deviceId,
    identity: parsed.identity,
    engine: parsed.engine,
    engineState: parsed.engineState === null ? null : fromBase64(parsed.engineState),
    conversations: new Map(
      Object.entries(parsed.conversations).map(([id, record]) => [
        id,
        {
          groupId: fromBase64(record.groupId),
          status: record.status ?? 'active',
          cursor: record.cursor,
          history: record.history,
          info: record.info === undefined ? defaultInfo() : deserializeInfo(record.info),
        },
      ]),
    ),
    outbox: (parsed.outbox ?? []).map((record) => ({
      ...record,
      ciphertext: record.ciphertext === null ? null : fromBase64(record.ciphertext),
    })),
  };
}

function deserializeInfo(info: SerializedInfo): ConversationInfo {
  return {
    ...info,
    timerSeconds: info.timerSeconds ?? null,
    timerSeq: info.timerSeq ?? 0,
    serverTimerSeconds: info.serverTimerSeconds ?? 0,
    metadata: {
      ...info.metadata,
      avatar: info.metadata.avatar === null ? null : fromBase64(info.metadata.avatar),
    },
  };
}
