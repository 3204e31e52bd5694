/**
 * Media keys from the MLS group (RFC 9605 §5.2): one SFrame base key per epoch, one KID per
 * sender (context ‖ sender index ‖ low epoch bits), and the security code members compare.
 * Pure functions over WebCrypto; {@link CallKeys} applies them to a conversation's epochs.
 */
import { CipherSuite, SFrameError, suiteParameters } from '@parley/sframe';

/** The SFrame suite of Parley calls: AES-128-GCM with full 128-bit tags (RFC 9605 §4.5). */
export const CALL_SFRAME_SUITE = CipherSuite.AES_128_GCM_SHA256_128;

/** E of RFC 9605 §5.2: the low bits of the MLS epoch carried in each KID. */
export const KID_EPOCH_BITS = 8;

/** The exporter label RFC 9605 §5.2 gives the SFrame base key. */
export const SFRAME_BASE_KEY_LABEL = 'SFrame 1.0 Base Key';

/** The only label OpenMLS through core-crypto 10.3 exports with (with an empty context). */
export const GENERIC_EXPORTER_LABEL = 'exporter';

/** Length of the generic export both engines can make: Nh of the SHA-256 MLS suites. */
export const GENERIC_EXPORT_LENGTH = 32;

/** The HKDF-Expand info of the security code. */
export const SECURITY_CODE_LABEL = 'Parley security code';

/**
 * How a conversation's SFrame base key comes from its MLS epoch:
 * - `rfc9605`: `MLS-Exporter("SFrame 1.0 Base Key", "", AEAD.Nk)`, exactly §5.2 (ts-mls only);
 * - `exporter-hkdf`: `HKDF-Expand(MLS-Exporter("exporter", "", 32), "SFrame 1.0 Base Key",
 *   AEAD.Nk)`, which every engine can compute (core-crypto exports nothing else). Every member
 *   of a call must use the same one; Parley uses `exporter-hkdf`.
 */
export type MediaKeySchedule = 'rfc9605' | 'exporter-hkdf';

const encoder = new TextEncoder();

/** The SFrame suite's AEAD key length, Nk (16 for {@link CALL_SFRAME_SUITE}). */
export function baseKeyLength(suite: number = CALL_SFRAME_SUITE): number {
  return suiteParameters(suite).nk;
}

/**
 * S of RFC 9605 §5.2: the smallest number of bits such that `groupSize <= 1 << S`, so that every
 * member index fits.
 */
export function senderIndexBits(groupSize: number): number {
  if (!Number.isSafeInteger(groupSize) || groupSize < 1) {
    throw new SFrameError('INVALID_ARGUMENT', 'a group has at least one member');
  }
  let bits = 0;
  while (2 ** bits < groupSize) bits += 1;
  return bits;
}

/** The fields of an MLS sender's KID (RFC 9605 §5.2, figure 8). */
export interface MlsKidFields {
  /** The sender's context value, chosen by the sender (one per outgoing stream). */
  readonly context: bigint;
  /** The sender's index in the group of that epoch. */
  readonly senderIndex: number;
  /** The epoch (only its low {@link KID_EPOCH_BITS} bits are carried). */
  readonly epoch: bigint;
}

/**
 * `KID = (context << (S + E)) + (sender_index << E) + (epoch % (1 << E))` with S from the
 * group's size; throws INVALID_ARGUMENT when a field does not fit in 64 bits.
 */
export function mlsKid(
  fields: MlsKidFields,
  groupSize: number,
  epochBits: number = KID_EPOCH_BITS,
): bigint {
  const s = senderIndexBits(groupSize);
  if (!Number.isSafeInteger(fields.senderIndex) || fields.senderIndex < 0) {
    throw new SFrameError('INVALID_ARGUMENT', 'the sender index must be a non-negative integer');
  }
  if (fields.senderIndex >= groupSize) {
    throw new SFrameError('INVALID_ARGUMENT', 'the sender index must be below the group size');
  }
  const contextBits = 64 - s - epochBits;
  if (fields.context < 0n || fields.context >= 1n << BigInt(contextBits)) {
    throw new SFrameError('INVALID_ARGUMENT', `the context must fit in ${contextBits} bits`);
  }
  const e = BigInt(epochBits);
  return (
    (fields.context << (BigInt(s) + e)) +
    (BigInt(fields.senderIndex) << e) +
    (fields.epoch % (1n << e))
  );
}

/**
 * Splits a KID back into its fields for a group of `groupSize` members: `epochBits` are the low
 * {@link KID_EPOCH_BITS} bits of the epoch it names.
 */
export function parseMlsKid(
  kid: bigint,
  groupSize: number,
  epochBits: number = KID_EPOCH_BITS,
): { context: bigint; senderIndex: number; epochBits: number } {
  const s = BigInt(senderIndexBits(groupSize));
  const e = BigInt(epochBits);
  return {
    context: kid >> (s + e),
    senderIndex: Number((kid >> e) & ((1n << s) - 1n)),
    epochBits: Number(kid & ((1n << e) - 1n)),
  };
}

async function hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const imported = await crypto.subtle.importKey(
    'raw',
    new Uint8Array(key),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  return new Uint8Array(await crypto.subtle.sign('HMAC', imported, new Uint8Array(data)));
}

/**
 * HKDF-Expand (RFC 5869 §2.3) with SHA-256: WebCrypto's HKDF always extracts first, and the
 * exported secret is already a pseudorandom key, so the expansion is written over HMAC.
 */
export async function hkdfExpandSha256(
  prk: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  if (!Number.isSafeInteger(length) || length < 1 || length > 255 * 32) {
    throw new SFrameError('INVALID_ARGUMENT', 'HKDF-Expand length must be 1 to 8160');
  }
  const out = new Uint8Array(length);
  let previous = new Uint8Array(0);
  for (let block = 1, offset = 0; offset < length; block += 1) {
    const input = new Uint8Array(previous.length + info.length + 1);
    input.set(previous);
    input.set(info, previous.length);
    input[input.length - 1] = block;
    previous = new Uint8Array(await hmacSha256(prk, input));
    out.set(previous.subarray(0, Math.min(previous.length, length - offset)), offset);
    offset += previous.length;
  }
  return out;
}

/**
 * The cross-engine base key: `HKDF-Expand(MLS-Exporter("exporter", "", 32), "SFrame 1.0 Base
 * Key", AEAD.Nk)`. Where §5.2 asks the exporter for its label directly, this asks it for the
 * one label core-crypto allows and separates the domain by the HKDF info instead.
 */
export function crossEngineBaseKey(
  genericExport: Uint8Array,
  suite: number = CALL_SFRAME_SUITE,
): Promise<Uint8Array> {
  return hkdfExpandSha256(
    genericExport,
    encoder.encode(SFRAME_BASE_KEY_LABEL),
    baseKeyLength(suite),
  );
}

/**
 * The security code of an epoch: `HKDF-Expand(MLS-Exporter("exporter", "", 32), "Parley
 * security code", 20)` read as five big-endian 32-bit numbers, each shown as 5 digits (mod
 * 100 000; the bias is below 2^-15). Members who see the same code share the epoch's secrets,
 * so no one (the server included) sits in the middle of the call.
 */
export async function securityCode(genericExport: Uint8Array): Promise<string> {
  const bytes = await hkdfExpandSha256(genericExport, encoder.encode(SECURITY_CODE_LABEL), 20);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const groups: string[] = [];
  for (let i = 0; i < 5; i += 1) {
    groups.push(String(view.getUint32(i * 4) % 100_000).padStart(5, '0'));
  }
  return groups.join(' ');
}
