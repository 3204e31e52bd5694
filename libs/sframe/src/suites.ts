/**
 * The cipher suites of RFC 9605 §4.5 and their AEADs over WebCrypto: AES-GCM directly, and the
 * AES-CTR + HMAC construction of §4.5.1 for the suites with short tags.
 */
import { SFrameError } from './errors.js';

/** The cipher suites registered by RFC 9605 §8.1, by their two-byte value. */
export const CipherSuite = {
  AES_128_CTR_HMAC_SHA256_80: 0x0001,
  AES_128_CTR_HMAC_SHA256_64: 0x0002,
  AES_128_CTR_HMAC_SHA256_32: 0x0003,
  AES_128_GCM_SHA256_128: 0x0004,
  AES_256_GCM_SHA512_128: 0x0005,
} as const;

/** One of the values of {@link CipherSuite}. */
export type CipherSuiteId = (typeof CipherSuite)[keyof typeof CipherSuite];

/** What a suite is made of (the columns of RFC 9605 §4.5, in bytes). */
export interface SuiteParameters {
  readonly id: number;
  readonly name: string;
  readonly hash: 'SHA-256' | 'SHA-512';
  /** Hash output length. */
  readonly nh: number;
  /** AEAD key length (for the CTR suites: the AES key and then the HMAC key). */
  readonly nk: number;
  /** Nonce length. */
  readonly nn: number;
  /** Tag length. */
  readonly nt: number;
  /** AES-CTR + HMAC (§4.5.1), or AES-GCM. */
  readonly aead: 'AES-CTR-HMAC' | 'AES-GCM';
  /** AES key length (the first part of the AEAD key for the CTR suites). */
  readonly aesKeyLength: number;
}

function ctrHmac(id: number, name: string, nh: 32 | 64, aesKeyLength: 16 | 32, nt: number) {
  const hash = nh === 32 ? 'SHA-256' : 'SHA-512';
  const nk = aesKeyLength + nh;
  return { id, name, hash, nh, nk, nn: 12, nt, aead: 'AES-CTR-HMAC', aesKeyLength } as const;
}

function gcm(id: number, name: string, nh: 32 | 64, nk: 16 | 32) {
  const hash = nh === 32 ? 'SHA-256' : 'SHA-512';
  return { id, name, hash, nh, nk, nn: 12, nt: 16, aead: 'AES-GCM', aesKeyLength: nk } as const;
}

const SUITES = new Map<number, SuiteParameters>([
  [1, ctrHmac(1, 'AES_128_CTR_HMAC_SHA256_80', 32, 16, 10)],
  [2, ctrHmac(2, 'AES_128_CTR_HMAC_SHA256_64', 32, 16, 8)],
  [3, ctrHmac(3, 'AES_128_CTR_HMAC_SHA256_32', 32, 16, 4)],
  [4, gcm(4, 'AES_128_GCM_SHA256_128', 32, 16)],
  [5, gcm(5, 'AES_256_GCM_SHA512_128', 64, 32)],
]);

/** The parameters of a suite; throws `UNSUPPORTED_SUITE` for anything but 0x0001–0x0005. */
export function suiteParameters(suite: number): SuiteParameters {
  const parameters = SUITES.get(suite);
  if (parameters === undefined) {
    throw new SFrameError('UNSUPPORTED_SUITE', `cipher suite ${String(suite)} is not RFC 9605's`);
  }
  return parameters;
}

/** The WebCrypto implementation, or `CRYPTO_FAILURE` where there is none. */
export function subtle(): SubtleCrypto {
  const candidate = (globalThis as { crypto?: Crypto }).crypto?.subtle;
  if (candidate === undefined) {
    throw new SFrameError('CRYPTO_FAILURE', 'crypto.subtle is unavailable (not a secure context?)');
  }
  return candidate;
}

/** Runs a WebCrypto step, turning anything it throws into an `SFrameError` with `code`. */
export async function guarded<T>(
  code: 'BAD_KEY' | 'AUTHENTICATION_FAILED' | 'CRYPTO_FAILURE',
  what: string,
  step: () => Promise<T>,
): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof SFrameError) throw error;
    throw new SFrameError(code, what, { cause: error });
  }
}

/** HMAC of `data` under a raw key (used by HKDF; keys there are short-lived). */
export async function hmac(
  hash: SuiteParameters['hash'],
  key: Uint8Array<ArrayBuffer>,
  data: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const imported = await subtle().importKey('raw', key, { name: 'HMAC', hash }, false, ['sign']);
  return new Uint8Array(await subtle().sign('HMAC', imported, data));
}

/** An AEAD key of a suite, imported once and kept non-extractable. */
export type AeadKey =
  | { readonly aead: 'AES-GCM'; readonly key: CryptoKey }
  | { readonly aead: 'AES-CTR-HMAC'; readonly encKey: CryptoKey; readonly authKey: CryptoKey };

/** Imports an AEAD key (`nk` bytes) for a suite; throws `BAD_KEY` if it has the wrong length. */
export async function importAeadKey(
  parameters: SuiteParameters,
  key: Uint8Array<ArrayBuffer>,
): Promise<AeadKey> {
  if (key.length !== parameters.nk) {
    throw new SFrameError('BAD_KEY', `${parameters.name} takes a ${parameters.nk}-byte key`);
  }
  return guarded('BAD_KEY', 'WebCrypto refused the key', async () => {
    if (parameters.aead === 'AES-GCM') {
      const imported = await subtle().importKey('raw', key, 'AES-GCM', false, [
        'encrypt',
        'decrypt',
      ]);
      return { aead: 'AES-GCM', key: imported };
    }
    // §4.5.1 derive_subkeys: the AES key first, the HMAC key after it.
    const enc = key.subarray(0, parameters.aesKeyLength);
    const auth = key.subarray(parameters.aesKeyLength);
    const [encKey, authKey] = await Promise.all([
      subtle().importKey('raw', enc, 'AES-CTR', false, ['encrypt', 'decrypt']),
      subtle().importKey('raw', auth, { name: 'HMAC', hash: parameters.hash }, false, ['sign']),
    ]);
    return { aead: 'AES-CTR-HMAC', encKey, authKey };
  });
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function uint64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value));
  return out;
}

// §4.5.1 compute_tag: the lengths first, so that no two (aad, ct) splits MAC the same input.
async function computeTag(
  parameters: SuiteParameters,
  authKey: CryptoKey,
  nonce: Uint8Array,
  aad: Uint8Array,
  ct: Uint8Array,
): Promise<Uint8Array> {
  const authData = concat(
    uint64(aad.length),
    uint64(ct.length),
    uint64(parameters.nt),
    nonce,
    aad,
    ct,
  );
  const mac = await subtle().sign('HMAC', authKey, authData);
  return new Uint8Array(mac, 0, parameters.nt);
}

// The AES-CTR counter block: the 96-bit nonce, then a 32-bit block counter from zero.
function ctrParams(nonce: Uint8Array): AesCtrParams {
  return { name: 'AES-CTR', counter: concat(nonce, new Uint8Array(4)), length: 32 };
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return difference === 0;
}

/** AEAD.Encrypt of the suite: ciphertext followed by the `nt`-byte tag. */
export async function seal(
  parameters: SuiteParameters,
  key: AeadKey,
  nonce: Uint8Array<ArrayBuffer>,
  aad: Uint8Array<ArrayBuffer>,
  plaintext: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  return guarded('CRYPTO_FAILURE', 'encryption failed', async () => {
    if (key.aead === 'AES-GCM') {
      const params = { name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 };
      return new Uint8Array(await subtle().encrypt(params, key.key, plaintext));
    }
    const ct = new Uint8Array(await subtle().encrypt(ctrParams(nonce), key.encKey, plaintext));
    const tag = await computeTag(parameters, key.authKey, nonce, aad, ct);
    return concat(ct, tag);
  });
}

/**
 * AEAD.Decrypt of the suite. Throws `TRUNCATED_CIPHERTEXT` when shorter than a tag and
 * `AUTHENTICATION_FAILED` when the tag does not verify.
 */
export async function open(
  parameters: SuiteParameters,
  key: AeadKey,
  nonce: Uint8Array<ArrayBuffer>,
  aad: Uint8Array<ArrayBuffer>,
  ciphertext: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  if (ciphertext.length < parameters.nt) {
    throw new SFrameError('TRUNCATED_CIPHERTEXT', `shorter than the ${parameters.nt}-byte tag`);
  }
  if (key.aead === 'AES-GCM') {
    const params = { name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 };
    return guarded('AUTHENTICATION_FAILED', 'the tag does not verify', async () => {
      return new Uint8Array(await subtle().decrypt(params, key.key, ciphertext));
    });
  }
  const split = ciphertext.length - parameters.nt;
  const ct = ciphertext.subarray(0, split);
  const tag = ciphertext.subarray(split);
  const expected = await guarded('CRYPTO_FAILURE', 'HMAC failed', () =>
    computeTag(parameters, key.authKey, nonce, aad, ct),
  );
  // Decrypt only what authenticates (encrypt-then-MAC).
  if (!constantTimeEqual(tag, expected)) {
    throw new SFrameError('AUTHENTICATION_FAILED', 'the tag does not verify');
  }
  return guarded('CRYPTO_FAILURE', 'decryption failed', async () => {
    return new Uint8Array(await subtle().decrypt(ctrParams(nonce), key.encKey, ct));
  });
}
