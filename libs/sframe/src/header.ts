/**
 * The SFrame header (RFC 9605 §4.3): one config byte `|X|K K K|Y|C C C|`, then the KID and the
 * CTR as minimal big-endian integers of 1–8 bytes. A value below 8 sits in the config byte
 * itself (X or Y clear); otherwise X or Y is set and K or C holds its length minus one.
 */
import { SFrameError } from './errors.js';

/** Largest KID or CTR: both are unsigned 64-bit integers. */
export const MAX_UINT64 = (1n << 64n) - 1n;

/** A parsed SFrame header. KID and CTR are `bigint` so that the whole 64-bit range is exact. */
export interface SFrameHeader {
  /** Key identifier: which key the frame was encrypted with. */
  readonly kid: bigint;
  /** Counter: unique per frame under one key; it forms the nonce. */
  readonly ctr: bigint;
}

/** A header parsed from the front of a frame, with its exact bytes (they are part of the AAD). */
export interface DecodedHeader extends SFrameHeader {
  /** The header's bytes as received (a view into the frame). */
  readonly bytes: Uint8Array;
}

/** Checks a KID or CTR given as `bigint` or `number` and returns it as `bigint`. */
export function toUint64(value: bigint | number, what: string): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new SFrameError('INVALID_ARGUMENT', `${what} must be a non-negative safe integer`);
    }
    return BigInt(value);
  }
  if (typeof value !== 'bigint' || value < 0n || value > MAX_UINT64) {
    throw new SFrameError('INVALID_ARGUMENT', `${what} must be an integer in 0…2^64−1`);
  }
  return value;
}

function byteLength(value: bigint): number {
  let length = 1;
  while (value > 0xffn) {
    value >>= 8n;
    length++;
  }
  return length;
}

function writeBigEndian(target: Uint8Array, offset: number, length: number, value: bigint): void {
  for (let i = offset + length - 1; i >= offset; i--) {
    target[i] = Number(value & 0xffn);
    value >>= 8n;
  }
}

/** Encodes the header for a KID and a CTR (each `bigint` or `number`, 0…2^64−1). */
export function encodeHeader(kid: bigint | number, ctr: bigint | number): Uint8Array {
  const k = toUint64(kid, 'KID');
  const c = toUint64(ctr, 'CTR');
  const kidLength = k < 8n ? 0 : byteLength(k);
  const ctrLength = c < 8n ? 0 : byteLength(c);
  const header = new Uint8Array(1 + kidLength + ctrLength);
  const x = kidLength === 0 ? Number(k) : 0x08 | (kidLength - 1);
  const y = ctrLength === 0 ? Number(c) : 0x08 | (ctrLength - 1);
  header[0] = (x << 4) | y;
  writeBigEndian(header, 1, kidLength, k);
  writeBigEndian(header, 1 + kidLength, ctrLength, c);
  return header;
}

// One field of the header: the 4 bits of its half of the config byte, and its bytes if any.
function readField(frame: Uint8Array, nibble: number, offset: number, what: string) {
  if ((nibble & 0x08) === 0) return { value: BigInt(nibble), end: offset };
  const length = (nibble & 0x07) + 1;
  const end = offset + length;
  if (frame.length < end) {
    throw new SFrameError('TRUNCATED_HEADER', `the ${what} needs ${length} bytes`);
  }
  let value = 0n;
  for (let i = offset; i < end; i++) value = (value << 8n) | BigInt(frame[i] ?? 0);
  // §4.3 asks for the minimal encoding: a second spelling of one header would be a second
  // AAD for the same (KID, CTR), which no honest sender produces.
  if (value < 8n || (length > 1 && frame[offset] === 0)) {
    throw new SFrameError('MALFORMED_HEADER', `the ${what} is not minimally encoded`);
  }
  return { value, end };
}

/** Parses the header at the front of a frame; throws `TRUNCATED_HEADER` or `MALFORMED_HEADER`. */
export function decodeHeader(frame: Uint8Array): DecodedHeader {
  const config = frame[0];
  if (config === undefined) throw new SFrameError('TRUNCATED_HEADER', 'the frame is empty');
  const kid = readField(frame, config >> 4, 1, 'KID');
  const ctr = readField(frame, config & 0x0f, kid.end, 'CTR');
  return { kid: kid.value, ctr: ctr.value, bytes: frame.subarray(0, ctr.end) };
}
