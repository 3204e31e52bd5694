/**
 * Key derivation (RFC 9605 §4.4.2): from a base key and its KID, HKDF with the suite's hash
 * gives the AEAD key and the salt; the nonce of a frame is the salt XOR its counter.
 */
import { SFrameError } from './errors.js';
import { MAX_UINT64, toUint64 } from './header.js';
import {
  type AeadKey,
  type SuiteParameters,
  guarded,
  hmac,
  importAeadKey,
  suiteParameters,
} from './suites.js';

/** The values §4.4.2 derives from a base key, as bytes (what the RFC's test vectors list). */
export interface SFrameKeyMaterial {
  /** `HKDF-Extract("", base_key)`. */
  readonly secret: Uint8Array;
  /** `"SFrame 1.0 Secret key " ‖ KID (8 bytes) ‖ cipher suite (2 bytes)`. */
  readonly keyLabel: Uint8Array;
  /** `"SFrame 1.0 Secret salt " ‖ KID (8 bytes) ‖ cipher suite (2 bytes)`. */
  readonly saltLabel: Uint8Array;
  /** `HKDF-Expand(secret, keyLabel, Nk)`. */
  readonly key: Uint8Array;
  /** `HKDF-Expand(secret, saltLabel, Nn)`. */
  readonly salt: Uint8Array;
}

const encoder = new TextEncoder();

function label(prefix: string, kid: bigint, suite: number): Uint8Array<ArrayBuffer> {
  const text = encoder.encode(prefix);
  const out = new Uint8Array(text.length + 10);
  out.set(text);
  const view = new DataView(out.buffer);
  view.setBigUint64(text.length, kid);
  view.setUint16(text.length + 8, suite);
  return out;
}

/** Copies bytes into a fresh buffer: WebCrypto takes no views of shared or resizable memory. */
export function ownBytes(value: unknown, what: string): Uint8Array<ArrayBuffer> {
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value.slice(0));
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice();
  }
  throw new SFrameError('INVALID_ARGUMENT', `${what} must be bytes (Uint8Array or ArrayBuffer)`);
}

async function hkdfExpand(
  hash: SuiteParameters['hash'],
  prk: Uint8Array<ArrayBuffer>,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(length);
  let previous = new Uint8Array(0);
  for (let block = 1, offset = 0; offset < length; block++) {
    const input = new Uint8Array(previous.length + info.length + 1);
    input.set(previous);
    input.set(info, previous.length);
    input[input.length - 1] = block;
    previous = await hmac(hash, prk, input);
    out.set(previous.subarray(0, length - offset), offset);
    offset += previous.length;
  }
  return out;
}

/**
 * Derives `sframe_secret`, `sframe_key` and `sframe_salt` for a base key and KID exactly as
 * RFC 9605 §4.4.2 says. Most callers want {@link importSFrameKey}; this one returns the bytes.
 */
export async function deriveSFrameKeyMaterial(
  suite: number,
  kid: bigint | number,
  baseKey: Uint8Array,
): Promise<SFrameKeyMaterial> {
  const parameters = suiteParameters(suite);
  const k = toUint64(kid, 'KID');
  const ikm = ownBytes(baseKey, 'the base key');
  if (ikm.length === 0) throw new SFrameError('BAD_KEY', 'the base key is empty');
  return guarded('CRYPTO_FAILURE', 'key derivation failed', async () => {
    // HKDF-Extract with an empty salt: HMAC pads its key with zeros, so Nh zero bytes are the
    // same key, and WebCrypto refuses zero-length HMAC keys.
    const secret = await hmac(parameters.hash, new Uint8Array(parameters.nh), ikm);
    const keyLabel = label('SFrame 1.0 Secret key ', k, parameters.id);
    const saltLabel = label('SFrame 1.0 Secret salt ', k, parameters.id);
    const [key, salt] = await Promise.all([
      hkdfExpand(parameters.hash, secret, keyLabel, parameters.nk),
      hkdfExpand(parameters.hash, secret, saltLabel, parameters.nn),
    ]);
    return { secret, keyLabel, saltLabel, key, salt };
  });
}

/** A derived SFrame key for one KID: the imported AEAD key and the salt. Opaque to callers. */
export interface SFrameKey {
  readonly suite: SuiteParameters;
  readonly kid: bigint;
  readonly aeadKey: AeadKey;
  readonly salt: Uint8Array<ArrayBuffer>;
}

/** Derives and imports the key of a KID (the AEAD key stays non-extractable in WebCrypto). */
export async function importSFrameKey(
  suite: number,
  kid: bigint | number,
  baseKey: Uint8Array,
): Promise<SFrameKey> {
  const material = await deriveSFrameKeyMaterial(suite, kid, baseKey);
  const parameters = suiteParameters(suite);
  const aeadKey = await importAeadKey(parameters, new Uint8Array(material.key));
  return {
    suite: parameters,
    kid: toUint64(kid, 'KID'),
    aeadKey,
    salt: new Uint8Array(material.salt),
  };
}

/** The nonce of a frame: the salt XOR the counter, big-endian and left-padded to `Nn` bytes. */
export function frameNonce(salt: Uint8Array, ctr: bigint): Uint8Array<ArrayBuffer> {
  if (ctr < 0n || ctr > MAX_UINT64) throw new SFrameError('INVALID_ARGUMENT', 'CTR out of range');
  const nonce = new Uint8Array(salt);
  let rest = ctr;
  for (let i = nonce.length - 1; i >= 0 && rest > 0n; i--) {
    nonce[i] = (nonce[i] ?? 0) ^ Number(rest & 0xffn);
    rest >>= 8n;
  }
  return nonce;
}
