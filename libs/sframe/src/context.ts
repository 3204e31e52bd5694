/**
 * Sender and receiver contexts (RFC 9605 §4.4.3–4.4.4): a sender encrypts under one KID with a
 * counter that never repeats; a receiver holds one key per KID — in practice one per sender and
 * epoch — each with its own replay window.
 */
import { SFrameError } from './errors.js';
import { MAX_UINT64, decodeHeader, encodeHeader, toUint64 } from './header.js';
import { type SFrameKey, frameNonce, importSFrameKey, ownBytes } from './keys.js';
import { open, seal, suiteParameters } from './suites.js';

/** How many counters behind the highest accepted one a receiver still accepts, by default. */
export const DEFAULT_REPLAY_WINDOW = 128;

function aadOf(header: Uint8Array, metadata: Uint8Array): Uint8Array<ArrayBuffer> {
  const aad = new Uint8Array(header.length + metadata.length);
  aad.set(header);
  aad.set(metadata, header.length);
  return aad;
}

const EMPTY = new Uint8Array(0);

/**
 * Encrypts one frame under a key with a given counter: `header ‖ AEAD.Encrypt(...)`, the AAD
 * being `header ‖ metadata`. The caller must never use a counter twice with one key;
 * {@link SFrameSender} does that bookkeeping.
 */
export async function encryptFrame(
  key: SFrameKey,
  ctr: bigint | number,
  plaintext: Uint8Array,
  metadata: Uint8Array = EMPTY,
): Promise<Uint8Array> {
  const c = toUint64(ctr, 'CTR');
  const header = encodeHeader(key.kid, c);
  const aad = aadOf(header, ownBytes(metadata, 'the metadata'));
  const nonce = frameNonce(key.salt, c);
  const ciphertext = await seal(
    key.suite,
    key.aeadKey,
    nonce,
    aad,
    ownBytes(plaintext, 'the plaintext'),
  );
  const frame = new Uint8Array(header.length + ciphertext.length);
  frame.set(header);
  frame.set(ciphertext, header.length);
  return frame;
}

/**
 * The counters accepted under one key: the highest, and a bitmap of the `size` counters at and
 * below it. A counter is new if it is above the highest, or within the window and unmarked.
 */
export class ReplayWindow {
  private highest: bigint | undefined;
  // Bit i stands for counter highest − i.
  private seen = 0n;
  private readonly mask: bigint;

  constructor(readonly size: number = DEFAULT_REPLAY_WINDOW) {
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new SFrameError('INVALID_ARGUMENT', 'the replay window must be a positive integer');
    }
    this.mask = (1n << BigInt(size)) - 1n;
  }

  /** Whether `ctr` would be accepted now. */
  accepts(ctr: bigint): boolean {
    if (this.highest === undefined || ctr > this.highest) return true;
    const behind = this.highest - ctr;
    return behind < BigInt(this.size) && ((this.seen >> behind) & 1n) === 0n;
  }

  /** Marks `ctr` as accepted; the caller checked {@link accepts} first. */
  mark(ctr: bigint): void {
    if (this.highest === undefined || ctr > this.highest) {
      const ahead = this.highest === undefined ? BigInt(this.size) : ctr - this.highest;
      this.seen = ahead >= BigInt(this.size) ? 1n : ((this.seen << ahead) | 1n) & this.mask;
      this.highest = ctr;
    } else {
      this.seen |= 1n << (this.highest - ctr);
    }
  }
}

/** Options of {@link SFrameSender.create}. */
export interface SFrameSenderOptions {
  /** One of {@link CipherSuite}. */
  readonly suite: number;
  /** The KID written in every frame's header, 0…2^64−1. */
  readonly kid: bigint | number;
  /** The base key of that KID (from the key-management layer, e.g. the MLS exporter). */
  readonly baseKey: Uint8Array;
  /** The first counter to use (default 0); never one already used with this key. */
  readonly counter?: bigint | number;
}

/**
 * Encrypts frames under one KID at a time, with a counter that increases by one per frame and
 * never wraps: at 2^64 frames it refuses with `COUNTER_EXHAUSTED`. {@link rekey} switches to a
 * new KID and key (a new MLS epoch) and restarts the counter.
 */
export class SFrameSender {
  private constructor(
    private key: SFrameKey,
    private next: bigint,
  ) {}

  /** Derives the key for `kid` from `baseKey` and returns a sender ready to encrypt. */
  static async create(options: SFrameSenderOptions): Promise<SFrameSender> {
    const counter = toUint64(options.counter ?? 0n, 'the first counter');
    const key = await importSFrameKey(options.suite, options.kid, options.baseKey);
    return new SFrameSender(key, counter);
  }

  /** The KID frames are encrypted under now. */
  get kid(): bigint {
    return this.key.kid;
  }

  /** The counter the next frame will carry (2^64 once exhausted). */
  get counter(): bigint {
    return this.next;
  }

  /** Switches to a new KID and base key; the counter restarts at `counter` (default 0). */
  async rekey(
    kid: bigint | number,
    baseKey: Uint8Array,
    counter: bigint | number = 0n,
  ): Promise<void> {
    const first = toUint64(counter, 'the first counter');
    const key = await importSFrameKey(this.key.suite.id, kid, baseKey);
    // Assigned together after the await: frames encrypted meanwhile kept the old key and
    // its counters, and the new key starts fresh.
    this.key = key;
    this.next = first;
  }

  /** Encrypts one frame: `header ‖ ciphertext ‖ tag`, authenticating `metadata` too. */
  async encrypt(plaintext: Uint8Array, metadata: Uint8Array = EMPTY): Promise<Uint8Array> {
    if (this.next > MAX_UINT64) {
      throw new SFrameError('COUNTER_EXHAUSTED', `KID ${this.key.kid} has used every counter`);
    }
    // Taken before any await, so that concurrent calls never share a counter.
    const ctr = this.next++;
    return encryptFrame(this.key, ctr, plaintext, metadata);
  }
}

/** Options of {@link SFrameReceiver}. */
export interface SFrameReceiverOptions {
  /** One of {@link CipherSuite}; every key of this receiver uses it. */
  readonly suite: number;
  /** Counters accepted behind the highest one per KID (default {@link DEFAULT_REPLAY_WINDOW}). */
  readonly replayWindow?: number;
}

/** A frame decrypted by {@link SFrameReceiver.decrypt}. */
export interface DecryptedFrame {
  readonly plaintext: Uint8Array;
  /** Which key (so which sender and epoch) it was encrypted under. */
  readonly kid: bigint;
  readonly ctr: bigint;
}

interface ReceiverKey {
  readonly key: SFrameKey;
  readonly window: ReplayWindow;
}

/**
 * Decrypts frames with the keys it holds, one per KID, each with its own replay window: a
 * counter is accepted once, and only if it is at most `replayWindow − 1` behind the highest
 * counter accepted under that KID (frames arrive out of order, but not by much).
 */
export class SFrameReceiver {
  private readonly keys = new Map<bigint, ReceiverKey>();
  private readonly suite: number;
  private readonly windowSize: number;

  /** Throws `UNSUPPORTED_SUITE` or `INVALID_ARGUMENT` (replay window) at once, not at a frame. */
  constructor(options: SFrameReceiverOptions) {
    this.suite = suiteParameters(options.suite).id;
    this.windowSize = new ReplayWindow(options.replayWindow ?? DEFAULT_REPLAY_WINDOW).size;
  }

  /**
   * Derives and holds the key of `kid`. Throws `DUPLICATE_KID` if one is already held:
   * replacing it would reset its replay window, so a caller must {@link removeKey} first.
   */
  async addKey(kid: bigint | number, baseKey: Uint8Array): Promise<void> {
    const k = toUint64(kid, 'KID');
    if (this.keys.has(k)) throw new SFrameError('DUPLICATE_KID', `KID ${k} is already held`);
    const key = await importSFrameKey(this.suite, k, baseKey);
    // Checked again: another addKey of this KID may have finished during the derivation.
    if (this.keys.has(k)) throw new SFrameError('DUPLICATE_KID', `KID ${k} is already held`);
    this.keys.set(k, { key, window: new ReplayWindow(this.windowSize) });
  }

  /** Forgets the key of `kid` (frames under it then fail with `UNKNOWN_KID`); whether one was held. */
  removeKey(kid: bigint | number): boolean {
    return this.keys.delete(toUint64(kid, 'KID'));
  }

  /** Whether a key is held for `kid`. */
  hasKey(kid: bigint | number): boolean {
    return this.keys.has(toUint64(kid, 'KID'));
  }

  /** The KIDs whose keys are held. */
  kids(): bigint[] {
    return [...this.keys.keys()];
  }

  /**
   * Decrypts one frame. Throws `SFrameError` only: `TRUNCATED_HEADER`, `MALFORMED_HEADER`,
   * `UNKNOWN_KID`, `REPLAY`, `TRUNCATED_CIPHERTEXT` or `AUTHENTICATION_FAILED` (or
   * `INVALID_ARGUMENT` for a frame that is not bytes).
   */
  async decrypt(frame: Uint8Array, metadata: Uint8Array = EMPTY): Promise<DecryptedFrame> {
    const bytes = ownBytes(frame, 'the frame');
    const header = decodeHeader(bytes);
    const entry = this.keys.get(header.kid);
    if (entry === undefined) throw new SFrameError('UNKNOWN_KID', `no key for KID ${header.kid}`);
    // Checked before the work (cheap rejection) and again after it: two copies of one frame
    // may be in flight at once, and only the first to finish may pass.
    if (!entry.window.accepts(header.ctr)) throw replay(header.kid, header.ctr);
    const aad = aadOf(header.bytes, ownBytes(metadata, 'the metadata'));
    const nonce = frameNonce(entry.key.salt, header.ctr);
    const ciphertext = bytes.subarray(header.bytes.length);
    const plaintext = await open(entry.key.suite, entry.key.aeadKey, nonce, aad, ciphertext);
    if (!entry.window.accepts(header.ctr)) throw replay(header.kid, header.ctr);
    entry.window.mark(header.ctr);
    return { plaintext, kid: header.kid, ctr: header.ctr };
  }
}

function replay(kid: bigint, ctr: bigint): SFrameError {
  return new SFrameError('REPLAY', `KID ${kid} counter ${ctr} was seen or is too old`);
}
