/**
 * Engine state at rest: AES-256-GCM under a key the caller gives or one derived from a
 * passphrase with scrypt. WebCrypto only (plus @noble/hashes for scrypt, which WebCrypto lacks),
 * so the same code runs in Node and in the browser.
 *
 * Sealed layout, version 1 (all of it before the ciphertext is the AES-GCM additional data, so
 * a changed header fails like a changed ciphertext):
 *
 * ```
 * "PRLS"            4 bytes magic
 * version           u8 (1)
 * kdf               u8: 0 = raw key from the caller, 1 = scrypt
 *   scrypt only:    log2(N) u8, r u8, p u8, salt length u8, salt
 * nonce length      u8 (12), nonce
 * ciphertext        plaintext length + 16-byte tag
 * ```
 */
import { scryptAsync } from '@noble/hashes/scrypt.js';

/** Why sealed state could not be opened. */
export type StateDecryptionFailure =
  /** Too short or the wrong magic: not something {@link encryptState} wrote. */
  | 'NOT_SEALED_STATE'
  /** Written by a newer (or unknown) format version. */
  | 'UNSUPPORTED_VERSION'
  /** The header is malformed or names KDF parameters outside the accepted bounds. */
  | 'INVALID_HEADER'
  /** The key given was not derived the way the header says (other KDF, salt or parameters). */
  | 'KEY_MISMATCH'
  /** Wrong key or passphrase, or the bytes were changed. AES-GCM cannot tell which. */
  | 'AUTHENTICATION_FAILED';

/** Sealed state could not be decrypted; `reason` says why. Never carries key or payload bytes. */
export class StateDecryptionError extends Error {
  override readonly name = 'StateDecryptionError';

  constructor(
    /** Stable code of the failure. */
    readonly reason: StateDecryptionFailure,
    message: string,
  ) {
    super(message);
  }
}

/** scrypt cost parameters (RFC 7914); N is given as its base-2 logarithm. */
export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  logN: number;
  /** Block size. */
  r: number;
  /** Parallelisation. */
  p: number;
}

/**
 * The default scrypt cost: N = 2^17, r = 8, p = 1 (OWASP's recommendation; 128 MiB and well
 * under a second per derivation in Node). Stored in every sealed header, so raising it later
 * leaves old files readable.
 */
export const DEFAULT_SCRYPT_PARAMS: Readonly<ScryptParams> = Object.freeze({
  logN: 17,
  r: 8,
  p: 1,
});

/** How a {@link StateKey} was obtained; written into the header of what it seals. */
export type StateKeyDerivation =
  { kind: 'raw' } | ({ kind: 'scrypt'; salt: Uint8Array } & ScryptParams);

/** An AES-256-GCM key for state at rest, with how it was derived. */
export interface StateKey {
  /** Non-extractable AES-GCM key. */
  readonly cryptoKey: CryptoKey;
  /** Recorded in the sealed header so a passphrase alone can reopen the state. */
  readonly derivation: StateKeyDerivation;
}

/** What the header of sealed state says, readable without any key. */
export interface SealedStateHeader {
  /** Format version. */
  version: number;
  /** How the key was derived (for scrypt: its parameters and salt). */
  derivation: StateKeyDerivation;
}

const MAGIC = new Uint8Array([0x50, 0x52, 0x4c, 0x53]); // "PRLS"
const VERSION = 1;
const KDF_RAW = 0;
const KDF_SCRYPT = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const SALT_BYTES = 16;
const MIN_SALT_BYTES = 16;

// Bounds on header-supplied scrypt parameters: a forged header must not make the reader spend
// gigabytes or minutes. 128·N·r ≤ 1 GiB is also @noble/hashes' default memory limit.
const MIN_LOG_N = 10;
const MAX_LOG_N = 20;
const MAX_R = 32;
const MAX_P = 16;
const MAX_SCRYPT_MEMORY = 2 ** 30;

function subtle(): SubtleCrypto {
  // Node ≥ 19 and every browser in a secure context have WebCrypto on globalThis.
  return globalThis.crypto.subtle;
}

function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  return globalThis.crypto.getRandomValues(new Uint8Array(length));
}

function checkScryptParams(params: ScryptParams): string | undefined {
  const { logN, r, p } = params;
  if (!Number.isInteger(logN) || logN < MIN_LOG_N || logN > MAX_LOG_N) {
    return `scrypt log2(N) must be an integer from ${MIN_LOG_N} to ${MAX_LOG_N}`;
  }
  if (!Number.isInteger(r) || r < 1 || r > MAX_R)
    return `scrypt r must be an integer from 1 to ${MAX_R}`;
  if (!Number.isInteger(p) || p < 1 || p > MAX_P)
    return `scrypt p must be an integer from 1 to ${MAX_P}`;
  if (128 * 2 ** logN * r > MAX_SCRYPT_MEMORY) return 'scrypt parameters need more than 1 GiB';
  return undefined;
}

async function importAesKey(bytes: Uint8Array): Promise<CryptoKey> {
  const copy = new Uint8Array(bytes);
  try {
    return await subtle().importKey('raw', copy, { name: 'AES-GCM' }, false, [
      'encrypt',
      'decrypt',
    ]);
  } finally {
    copy.fill(0);
  }
}

/** A state key from 32 random bytes the caller keeps (for example in the OS keychain). */
export async function keyFromBytes(key: Uint8Array): Promise<StateKey> {
  if (key.length !== KEY_BYTES) throw new TypeError(`a state key is ${KEY_BYTES} bytes`);
  return { cryptoKey: await importAesKey(key), derivation: { kind: 'raw' } };
}

/** A fresh random salt of the recommended length for {@link keyFromPassphrase}. */
export function newSalt(): Uint8Array {
  return randomBytes(SALT_BYTES);
}

/**
 * Derives a state key from a passphrase with scrypt. The salt and parameters travel in the
 * header of everything the key seals, so {@link decryptState} needs only the passphrase.
 */
export async function keyFromPassphrase(
  passphrase: string,
  salt: Uint8Array,
  params: ScryptParams = DEFAULT_SCRYPT_PARAMS,
): Promise<StateKey> {
  const problem = checkScryptParams(params);
  if (problem !== undefined) throw new TypeError(problem);
  if (salt.length < MIN_SALT_BYTES || salt.length > 255) {
    throw new TypeError(`a salt is ${MIN_SALT_BYTES} to 255 bytes`);
  }
  // NFC, so that the same passphrase typed on two keyboards (composed or decomposed accents)
  // derives the same key.
  const secret = new TextEncoder().encode(passphrase.normalize('NFC'));
  const derived = await scryptAsync(secret, salt, {
    N: 2 ** params.logN,
    r: params.r,
    p: params.p,
    dkLen: KEY_BYTES,
    maxmem: MAX_SCRYPT_MEMORY + 1024,
  });
  secret.fill(0);
  try {
    return {
      cryptoKey: await importAesKey(derived),
      derivation: {
        kind: 'scrypt',
        logN: params.logN,
        r: params.r,
        p: params.p,
        salt: Uint8Array.from(salt),
      },
    };
  } finally {
    derived.fill(0);
  }
}

function encodeHeader(derivation: StateKeyDerivation, nonce: Uint8Array): Uint8Array<ArrayBuffer> {
  const parts: number[] = [...MAGIC, VERSION];
  if (derivation.kind === 'raw') {
    parts.push(KDF_RAW);
  } else {
    parts.push(KDF_SCRYPT, derivation.logN, derivation.r, derivation.p, derivation.salt.length);
    parts.push(...derivation.salt);
  }
  parts.push(nonce.length, ...nonce);
  return Uint8Array.from(parts);
}

interface ParsedSealed {
  header: SealedStateHeader;
  nonce: Uint8Array<ArrayBuffer>;
  /** Header bytes: the additional data. */
  aad: Uint8Array<ArrayBuffer>;
  ciphertext: Uint8Array<ArrayBuffer>;
}

function parseSealed(sealed: Uint8Array): ParsedSealed {
  let offset = 0;
  const byte = (): number => {
    const value = sealed[offset];
    if (value === undefined) throw new StateDecryptionError('INVALID_HEADER', 'truncated header');
    offset += 1;
    return value;
  };
  const bytes = (length: number): Uint8Array<ArrayBuffer> => {
    if (offset + length > sealed.length) {
      throw new StateDecryptionError('INVALID_HEADER', 'truncated header');
    }
    const out = sealed.slice(offset, offset + length);
    offset += length;
    return out;
  };
  if (sealed.length < MAGIC.length + 1 || MAGIC.some((value, i) => sealed[i] !== value)) {
    throw new StateDecryptionError('NOT_SEALED_STATE', 'not sealed Parley state');
  }
  offset = MAGIC.length;
  const version = byte();
  if (version !== VERSION) {
    throw new StateDecryptionError('UNSUPPORTED_VERSION', `sealed state version ${version}`);
  }
  let derivation: StateKeyDerivation;
  const kdf = byte();
  if (kdf === KDF_RAW) {
    derivation = { kind: 'raw' };
  } else if (kdf === KDF_SCRYPT) {
    const logN = byte();
    const r = byte();
    const p = byte();
    const problem = checkScryptParams({ logN, r, p });
    if (problem !== undefined) throw new StateDecryptionError('INVALID_HEADER', problem);
    const saltLength = byte();
    if (saltLength < MIN_SALT_BYTES) throw new StateDecryptionError('INVALID_HEADER', 'short salt');
    derivation = { kind: 'scrypt', logN, r, p, salt: bytes(saltLength) };
  } else {
    throw new StateDecryptionError('INVALID_HEADER', `unknown key derivation ${kdf}`);
  }
  if (byte() !== NONCE_BYTES) throw new StateDecryptionError('INVALID_HEADER', 'nonce length');
  const nonce = bytes(NONCE_BYTES);
  const aad = sealed.slice(0, offset);
  const ciphertext = sealed.slice(offset);
  if (ciphertext.length < TAG_BYTES) {
    throw new StateDecryptionError('INVALID_HEADER', 'ciphertext shorter than its tag');
  }
  return { header: { version, derivation }, nonce, aad, ciphertext };
}

/** Reads the header of sealed state (format version, KDF and salt) without decrypting. */
export function readSealedStateHeader(sealed: Uint8Array): SealedStateHeader {
  return parseSealed(sealed).header;
}

function sameDerivation(a: StateKeyDerivation, b: StateKeyDerivation): boolean {
  if (a.kind === 'raw' || b.kind === 'raw') return a.kind === b.kind;
  return (
    a.logN === b.logN &&
    a.r === b.r &&
    a.p === b.p &&
    a.salt.length === b.salt.length &&
    a.salt.every((value, i) => value === b.salt[i])
  );
}

/** Encrypts serialised state with AES-256-GCM under the key; a fresh nonce every time. */
export async function encryptState(plain: Uint8Array, key: StateKey): Promise<Uint8Array> {
  const nonce = randomBytes(NONCE_BYTES);
  const header = encodeHeader(key.derivation, nonce);
  const ciphertext = new Uint8Array(
    await subtle().encrypt(
      { name: 'AES-GCM', iv: nonce, additionalData: header, tagLength: TAG_BYTES * 8 },
      key.cryptoKey,
      new Uint8Array(plain),
    ),
  );
  const sealed = new Uint8Array(header.length + ciphertext.length);
  sealed.set(header, 0);
  sealed.set(ciphertext, header.length);
  return sealed;
}

/**
 * Decrypts what {@link encryptState} sealed, with the same key or, for a passphrase-derived key,
 * the passphrase alone (salt and scrypt parameters come from the header). Throws
 * {@link StateDecryptionError} on a wrong key or passphrase and on any changed byte.
 */
export async function decryptState(
  sealed: Uint8Array,
  key: StateKey | string,
): Promise<Uint8Array> {
  const parsed = parseSealed(sealed);
  const { derivation } = parsed.header;
  let stateKey: StateKey;
  if (typeof key === 'string') {
    if (derivation.kind !== 'scrypt') {
      throw new StateDecryptionError('KEY_MISMATCH', 'this state is sealed with a raw key');
    }
    stateKey = await keyFromPassphrase(key, derivation.salt, derivation);
  } else {
    if (!sameDerivation(key.derivation, derivation)) {
      throw new StateDecryptionError(
        'KEY_MISMATCH',
        'the key was derived differently from the one this state is sealed with',
      );
    }
    stateKey = key;
  }
  try {
    return new Uint8Array(
      await subtle().decrypt(
        { name: 'AES-GCM', iv: parsed.nonce, additionalData: parsed.aad, tagLength: TAG_BYTES * 8 },
        stateKey.cryptoKey,
        parsed.ciphertext,
      ),
    );
  } catch {
    throw new StateDecryptionError(
      'AUTHENTICATION_FAILED',
      'wrong key or passphrase, or the sealed state was modified',
    );
  }
}
