/**
 * The SFrame keys of a conversation's calls, following its MLS epochs: new keys the moment an
 * epoch changes (someone joined, left or was removed), the previous epoch's receive keys kept
 * only {@link PREVIOUS_EPOCH_GRACE_MS} for frames in flight, nothing once this device is out.
 */
import { parseIdentity, SerialQueue } from '@parley/protocol';
import { decodeHeader, SFrameError, SFrameReceiver, SFrameSender } from '@parley/sframe';
import { unrefTimer } from '../client/timers.js';
import {
  CALL_SFRAME_SUITE,
  crossEngineBaseKey,
  GENERIC_EXPORT_LENGTH,
  GENERIC_EXPORTER_LABEL,
  KID_EPOCH_BITS,
  baseKeyLength,
  type MediaKeySchedule,
  mlsKid,
  parseMlsKid,
  SFRAME_BASE_KEY_LABEL,
  securityCode,
} from './media-keys.js';

/** How long the previous epoch's receive keys stay after a new epoch's arrive (frames in flight). */
export const PREVIOUS_EPOCH_GRACE_MS = 5_000;

// Outgoing streams per sender and epoch whose keys a receiver derives: each stream has its own
// context (KID), and a member sending under ever new contexts must not grow the key table.
const MAX_CONTEXTS_PER_SENDER = 16;

/** What {@link CallKeys} needs from a conversation (a {@link Conversation} is one). */
export interface EpochSource {
  /** The current epoch, its members in leaf order and exports; null once out of the group. */
  epochSecrets(
    exports: readonly { label: string; length: number }[],
  ): Promise<{ epoch: bigint; members: string[]; secrets: Uint8Array[] } | null>;
  /** Calls the listener after each epoch change; returns an unsubscriber. */
  onEpochChange(listener: () => void): () => void;
}

/** Options of {@link CallKeys.open}. */
export interface CallKeysOptions {
  /** This device's MLS identity (its place among the members gives its sender index). */
  readonly identity: string;
  /** How the base key comes from the epoch (default `exporter-hkdf`, which every engine can do). */
  readonly schedule?: MediaKeySchedule;
  /** How long the previous epoch's receive keys stay (default {@link PREVIOUS_EPOCH_GRACE_MS}). */
  readonly graceMs?: number;
  /** Told of failures of the background rekeying. */
  readonly onError?: (error: unknown) => void;
}

/** The keys of one epoch became current. */
export interface Rekey {
  readonly epoch: bigint;
  /** The security code of the epoch (see {@link CallKeys.securityCode}). */
  readonly securityCode: string;
  /** This device's KID of context 0 in that epoch. */
  readonly kid: bigint;
}

/** A frame decrypted by {@link CallKeys.decrypt}, with who sent it under which epoch's keys. */
export interface DecryptedMediaFrame {
  readonly plaintext: Uint8Array;
  readonly epoch: bigint;
  readonly kid: bigint;
  readonly ctr: bigint;
  readonly sender: { identity: string; userId: string; deviceId: string };
}

interface EpochKeys {
  readonly epoch: bigint;
  readonly baseKey: Uint8Array;
  readonly members: readonly string[];
  readonly ownIndex: number;
  readonly securityCode: string;
  // KIDs held by the receiver for this epoch, and how many contexts per sender index.
  readonly kids: Set<bigint>;
  readonly contexts: Map<number, number>;
  expiry: ReturnType<typeof setTimeout> | null;
}

/**
 * One outgoing media stream's SFrame encryption (RFC 9605) under this device's current key:
 * each stream has its own random KID context, so that two streams (audio, video, a second tab)
 * never share a key and counter. Follows the epochs of its {@link CallKeys} by itself.
 */
export class FrameEncryptor {
  /** @internal Made by {@link CallKeys.createEncryptor}. */
  constructor(
    private sender: SFrameSender,
    /** The KID context of this stream (RFC 9605 §5.2). */
    readonly context: bigint,
    private readonly detach: (encryptor: FrameEncryptor) => void,
  ) {}

  private closed = false;

  /** The KID frames go out under now. */
  get kid(): bigint {
    return this.sender.kid;
  }

  /**
   * Encrypts one encoded frame: `SFrame header ‖ ciphertext ‖ tag`, authenticating `metadata`
   * too (which the receiver must pass identically). Throws SFrameError (`INVALID_ARGUMENT` once
   * closed or once this device has left the group).
   */
  encrypt(frame: Uint8Array, metadata?: Uint8Array): Promise<Uint8Array> {
    if (this.closed) {
      return Promise.reject(new SFrameError('INVALID_ARGUMENT', 'this encryptor is closed'));
    }
    return this.sender.encrypt(frame, metadata);
  }

  /** Stops encrypting (the stream ended); the keys stay with the {@link CallKeys}. */
  close(): void {
    this.closed = true;
    this.detach(this);
  }

  /** @internal Moves to the new epoch's key; frames under way keep the old one. */
  async rekey(kid: bigint, baseKey: Uint8Array): Promise<void> {
    await this.sender.rekey(kid, baseKey);
  }

  /** @internal This device is out of the group: nothing more may go out. */
  end(): void {
    this.closed = true;
  }
}

/**
 * A conversation's media keys for calls: per MLS epoch one SFrame base key (see
 * {@link MediaKeySchedule}), per member a KID `context ‖ sender index ‖ epoch % 256` (RFC 9605
 * §5.2, the sender index being the member's place among the group's members in leaf order). It
 * derives keys as soon as the conversation's epoch changes, keeps the previous epoch's receive
 * keys {@link PREVIOUS_EPOCH_GRACE_MS} for frames in flight and then forgets them, and stops
 * (encryptors refuse, nothing decrypts) once this device is no longer in the group.
 */
export class CallKeys {
  private readonly epochs = new Map<bigint, EpochKeys>();
  private current: EpochKeys | null = null;
  private readonly receiver = new SFrameReceiver({ suite: CALL_SFRAME_SUITE });
  private readonly encryptors = new Set<FrameEncryptor>();
  private readonly listeners = new Set<(rekey: Rekey) => void>();
  private readonly queue = new SerialQueue();
  private readonly unsubscribe: () => void;
  private stopped = false;
  private readonly schedule: MediaKeySchedule;
  private readonly graceMs: number;

  private constructor(
    private readonly source: EpochSource,
    private readonly options: CallKeysOptions,
  ) {
    this.schedule = options.schedule ?? 'exporter-hkdf';
    this.graceMs = options.graceMs ?? PREVIOUS_EPOCH_GRACE_MS;
    this.unsubscribe = source.onEpochChange(() => {
      this.refresh().catch((error: unknown) => options.onError?.(error));
    });
  }

  /**
   * Keys for the conversation's current epoch, following its later epochs until {@link close}.
   * Throws SFrameError `INVALID_ARGUMENT` if this device is not in the group.
   */
  static async open(source: EpochSource, options: CallKeysOptions): Promise<CallKeys> {
    const keys = new CallKeys(source, options);
    try {
      await keys.refresh();
      if (keys.current === null) {
        throw new SFrameError('INVALID_ARGUMENT', 'this device is not in the group');
      }
    } catch (error) {
      keys.close();
      throw error;
    }
    return keys;
  }

  /** The epoch whose keys frames go out under. */
  get epoch(): bigint {
    return this.live().epoch;
  }

  /**
   * The current epoch's security code: five groups of five digits that every member computes
   * alike from the epoch's secret; participants compare it aloud to know that no one else holds
   * the call's keys.
   */
  get securityCode(): string {
    return this.live().securityCode;
  }

  /** This device's KID of context 0 in the current epoch. */
  get kid(): bigint {
    const keys = this.live();
    return mlsKid(
      { context: 0n, senderIndex: keys.ownIndex, epoch: keys.epoch },
      keys.members.length,
    );
  }

  /** The epochs whose receive keys are held now (the current one and any in their grace time). */
  heldEpochs(): bigint[] {
    return [...this.epochs.keys()];
  }

  /** Whether keys are no longer available (closed, or this device left the group). */
  get ended(): boolean {
    return this.stopped;
  }

  /** Calls `listener` once the keys of each new epoch are ready; returns an unsubscriber. */
  onRekey(listener: (rekey: Rekey) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** An encryptor for one outgoing stream (its own random KID context), following the epochs. */
  async createEncryptor(): Promise<FrameEncryptor> {
    const keys = this.live();
    const context = randomContext();
    const kid = mlsKid(
      { context, senderIndex: keys.ownIndex, epoch: keys.epoch },
      keys.members.length,
    );
    const sender = await SFrameSender.create({
      suite: CALL_SFRAME_SUITE,
      kid,
      baseKey: keys.baseKey,
    });
    const encryptor = new FrameEncryptor(sender, context, (closed) =>
      this.encryptors.delete(closed),
    );
    this.encryptors.add(encryptor);
    // An epoch that changed during the derivation: the encryptor catches up before first use.
    if (this.current !== null && this.current !== keys) {
      await encryptor.rekey(this.kidOf(this.current, context), this.current.baseKey);
    }
    return encryptor;
  }

  /**
   * Decrypts a frame of another member: its KID names the epoch (low bits) and the sender (its
   * index among that epoch's members); keys of held epochs only. Throws SFrameError only
   * (`UNKNOWN_KID` for an epoch not held, e.g. after its grace time or after this device was
   * removed; `AUTHENTICATION_FAILED`, `REPLAY`, header errors).
   */
  async decrypt(frame: Uint8Array, metadata?: Uint8Array): Promise<DecryptedMediaFrame> {
    if (this.stopped) throw new SFrameError('UNKNOWN_KID', 'the call keys are closed');
    const { kid } = decodeHeader(frame);
    const found = this.resolve(kid);
    if (found === null) throw new SFrameError('UNKNOWN_KID', `no epoch held for KID ${kid}`);
    const { keys, senderIndex } = found;
    if (!this.receiver.hasKey(kid)) {
      const contexts = keys.contexts.get(senderIndex) ?? 0;
      if (contexts >= MAX_CONTEXTS_PER_SENDER) {
        throw new SFrameError('UNKNOWN_KID', `too many streams of one sender (KID ${kid})`);
      }
      keys.contexts.set(senderIndex, contexts + 1);
      keys.kids.add(kid);
      try {
        await this.receiver.addKey(kid, keys.baseKey);
      } catch (error) {
        // Two frames of a new stream at once: the other call added the key.
        if (!(error instanceof SFrameError && error.code === 'DUPLICATE_KID')) throw error;
      }
      // The epoch may have expired during the derivation.
      if (!this.epochs.has(keys.epoch)) this.receiver.removeKey(kid);
    }
    const decrypted = await this.receiver.decrypt(frame, metadata);
    const identity = keys.members[senderIndex] ?? '';
    const parsed = parseIdentity(identity);
    return {
      plaintext: decrypted.plaintext,
      epoch: keys.epoch,
      kid: decrypted.kid,
      ctr: decrypted.ctr,
      sender: { identity, userId: parsed?.userId ?? '', deviceId: parsed?.deviceId ?? '' },
    };
  }

  /**
   * Reads the conversation's epoch and, if it is new, makes its keys current: encryptors move to
   * it, receivers get it, older epochs expire after the grace time. Runs by itself on every
   * epoch change; callable to be sure.
   */
  refresh(): Promise<void> {
    return this.queue.run(async () => {
      if (this.stopped) return;
      const exports =
        this.schedule === 'rfc9605'
          ? [
              { label: GENERIC_EXPORTER_LABEL, length: GENERIC_EXPORT_LENGTH },
              { label: SFRAME_BASE_KEY_LABEL, length: baseKeyLength() },
            ]
          : [{ label: GENERIC_EXPORTER_LABEL, length: GENERIC_EXPORT_LENGTH }];
      const snapshot = await this.source.epochSecrets(exports);
      if (snapshot === null) {
        this.end();
        return;
      }
      if (this.current !== null && snapshot.epoch <= this.current.epoch) return;
      const [generic, rfcBaseKey] = snapshot.secrets;
      if (generic === undefined) throw new SFrameError('CRYPTO_FAILURE', 'no export');
      const baseKey =
        this.schedule === 'rfc9605' && rfcBaseKey !== undefined
          ? rfcBaseKey
          : await crossEngineBaseKey(generic);
      const ownIndex = snapshot.members.indexOf(this.options.identity);
      if (ownIndex < 0) {
        this.end();
        return;
      }
      const keys: EpochKeys = {
        epoch: snapshot.epoch,
        baseKey,
        members: snapshot.members,
        ownIndex,
        securityCode: await securityCode(generic),
        kids: new Set(),
        contexts: new Map(),
        expiry: null,
      };
      // RFC 9605 §5.2: an old epoch with the same low bits goes when the new one comes.
      for (const held of [...this.epochs.values()]) {
        if (lowBits(held.epoch) === lowBits(keys.epoch)) this.forget(held);
      }
      const previous = this.current;
      this.epochs.set(keys.epoch, keys);
      this.current = keys;
      await Promise.all(
        [...this.encryptors].map((encryptor) =>
          encryptor.rekey(this.kidOf(keys, encryptor.context), keys.baseKey),
        ),
      );
      if (previous !== null && this.epochs.has(previous.epoch)) {
        const expiry = setTimeout(() => {
          this.forget(previous);
        }, this.graceMs);
        // Keys waiting to expire never keep a process alive.
        unrefTimer(expiry);
        previous.expiry = expiry;
      }
      const rekey: Rekey = {
        epoch: keys.epoch,
        securityCode: keys.securityCode,
        kid: this.kidOf(keys, 0n),
      };
      for (const listener of this.listeners) {
        try {
          listener(rekey);
        } catch (error) {
          this.options.onError?.(error);
        }
      }
    });
  }

  /** Forgets every key and stops following the conversation. */
  close(): void {
    this.unsubscribe();
    this.end();
  }

  private end(): void {
    this.stopped = true;
    for (const keys of [...this.epochs.values()]) this.forget(keys);
    this.current = null;
    for (const encryptor of this.encryptors) encryptor.end();
    this.encryptors.clear();
  }

  private forget(keys: EpochKeys): void {
    if (keys.expiry !== null) clearTimeout(keys.expiry);
    for (const kid of keys.kids) this.receiver.removeKey(kid);
    keys.kids.clear();
    keys.baseKey.fill(0);
    this.epochs.delete(keys.epoch);
  }

  private resolve(kid: bigint): { keys: EpochKeys; senderIndex: number } | null {
    const epochBits = Number(kid & ((1n << BigInt(KID_EPOCH_BITS)) - 1n));
    for (const keys of this.epochs.values()) {
      if (lowBits(keys.epoch) !== epochBits) continue;
      const parsed = parseMlsKid(kid, keys.members.length);
      // Frames under this device's own index are not another member's: never accepted.
      if (parsed.senderIndex >= keys.members.length || parsed.senderIndex === keys.ownIndex) {
        return null;
      }
      return { keys, senderIndex: parsed.senderIndex };
    }
    return null;
  }

  private kidOf(keys: EpochKeys, context: bigint): bigint {
    return mlsKid({ context, senderIndex: keys.ownIndex, epoch: keys.epoch }, keys.members.length);
  }

  private live(): EpochKeys {
    if (this.current === null) {
      throw new SFrameError('INVALID_ARGUMENT', 'the call keys are closed');
    }
    return this.current;
  }
}

function lowBits(epoch: bigint): number {
  return Number(epoch % (1n << BigInt(KID_EPOCH_BITS)));
}

/**
 * A random 32-bit context (at least 1; 0 is {@link CallKeys.kid}'s): two streams of one device
 * in one epoch — also across restarts, which forget which contexts were used — share a key and
 * counter only if they draw the same context, with probability 2^-32 per pair.
 */
function randomContext(): bigint {
  const [value = 1] = crypto.getRandomValues(new Uint32Array(1));
  return BigInt(Math.max(1, value));
}
