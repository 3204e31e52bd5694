import { fromBase64, toBase64 } from '@parley/protocol';

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
}

/** Whether this device is in a conversation, was removed from it, or left it. */
export type ConversationStatus = 'active' | 'removed' | 'left';

/** What a client remembers of one conversation. */
export interface ConversationRecord {
  groupId: Uint8Array;
  status: ConversationStatus;
  /** Everything up to here is processed. */
  cursor: number;
  /** The newest decrypted messages, oldest first. */
  history: StoredMessage[];
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

// Version 1 had no conversation status (every conversation was active) and no outbox.
interface SerializedState {
  version: 2;
  token: string | null;
  userId: string | null;
  deviceId: string | null;
  identity: string | null;
  engine: string | null;
  engineState: string | null;
  conversations: Record<
    string,
    { groupId: string; status?: ConversationStatus; cursor: number; history: StoredMessage[] }
  >;
  outbox?: SerializedOutboxRecord[];
}

/** State to bytes (JSON), for a StateStore. */
export function serializeClientState(state: ClientState): Uint8Array {
  const serialized: SerializedState = {
    version: 2,
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
  if (parsed.version !== 1 && parsed.version !== 2) {
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
        },
      ]),
    ),
    outbox: (parsed.outbox ?? []).map((record) => ({
      ...record,
      ciphertext: record.ciphertext === null ? null : fromBase64(record.ciphertext),
    })),
  };
}
