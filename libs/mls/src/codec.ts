import {
  decodeMlsMessage,
  encodeMlsMessage,
  type MLSMessage,
  type MlsMessageContent,
} from 'ts-mls';

import { bytesEqual, readUint16 } from './bytes.js';
import { MlsError, asMlsError } from './errors.js';

/** A decoded MLSMessage (RFC 9420 §6), as ts-mls models it. */
export type MlsMessage = MLSMessage;

/** MLSMessage wire formats (RFC 9420 §6), named without the `mls_` prefix. */
export type WireFormat =
  'public_message' | 'private_message' | 'welcome' | 'group_info' | 'key_package';

/** Size limit for inputs whose callers pass none: a GroupInfo with the ratchet tree of a group of several thousand members fits. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Size limit for one key package whose caller passes none: basic credentials need under 1 KiB, x509 chains a few. */
export const DEFAULT_MAX_KEY_PACKAGE_BYTES = 64 * 1024;

/** Options common to the decoders. */
export interface DecodeOptions {
  /** Inputs longer than this are refused with TOO_LARGE before any parsing. */
  maxBytes?: number;
}

type TsMlsWireFormat = MlsMessageContent['wireformat'];

/** The message variant ts-mls decodes for a wire format. */
export type MessageOf<W extends TsMlsWireFormat> = MLSMessage &
  Extract<MlsMessageContent, { wireformat: W }>;

const WIRE_FORMATS = new Map<number, WireFormat>([
  [1, 'public_message'],
  [2, 'private_message'],
  [3, 'welcome'],
  [4, 'group_info'],
  [5, 'key_package'],
]);

const MLS10 = 1;
const HEADER_BYTES = 4;

/** The MLSMessage header (version, wire_format) occupies this many bytes before the body. */
export const MLS_MESSAGE_HEADER_BYTES = HEADER_BYTES;

/**
 * The size limit to apply. A broken limit is the caller's bug, not a bad message, so it fails
 * loudly with a TypeError; callers resolve it before any try block that maps errors to MlsError.
 */
export function resolveMaxBytes(maxBytes: number | undefined, fallback: number): number {
  const limit = maxBytes ?? fallback;
  if (Number.isNaN(limit) || limit < 0) throw new TypeError('invalid maxBytes');
  return limit;
}

function readHeader(bytes: Uint8Array, maxBytes: number): WireFormat {
  // Callers are typed, but the server hands us whatever arrived on the wire.
  if (!((bytes as unknown) instanceof Uint8Array)) throw new MlsError('DECODE', 'not a byte array');
  if (bytes.length > maxBytes) {
    throw new MlsError('TOO_LARGE', `${bytes.length} bytes exceeds the limit of ${maxBytes}`);
  }
  if (bytes.length < HEADER_BYTES) {
    throw new MlsError('DECODE', 'shorter than an MLSMessage header');
  }
  const version = readUint16(bytes, 0);
  if (version !== MLS10) throw new MlsError('UNSUPPORTED_VERSION', `protocol version ${version}`);
  const code = readUint16(bytes, 2);
  const wireFormat = WIRE_FORMATS.get(code);
  if (wireFormat === undefined) throw new MlsError('DECODE', `unknown wire format ${code}`);
  return wireFormat;
}

function decodeBody(bytes: Uint8Array): MLSMessage {
  let decoded: [MLSMessage, number] | undefined;
  try {
    decoded = decodeMlsMessage(bytes, 0);
  } catch (error) {
    throw asMlsError(error, 'DECODE');
  }
  if (decoded === undefined) throw new MlsError('DECODE', 'malformed MLSMessage');
  const [message, consumed] = decoded;
  // ts-mls's optional<T> decoder reports one byte consumed even past the end of its input.
  if (consumed > bytes.length) throw new MlsError('DECODE', 'truncated MLSMessage');
  if (consumed < bytes.length) {
    throw new MlsError('TRAILING_BYTES', `${bytes.length - consumed} bytes after the MLSMessage`);
  }
  // ts-mls accepts non-minimal length prefixes and any non-1 presence octet as "absent"; RFC 9420
  // wants one encoding per value, and the server stores and hashes the bytes as received, so
  // only the encoding that re-encodes to itself is accepted.
  let reencoded: Uint8Array;
  try {
    reencoded = encodeMlsMessage(message);
  } catch (error) {
    // ts-mls's list encoder nests one closure per element and overflows the stack somewhere
    // past 9,000 elements; such a message is too large for this library, not malformed.
    if (error instanceof RangeError) throw new MlsError('TOO_LARGE', 'too many list elements');
    throw asMlsError(error, 'DECODE');
  }
  if (!bytesEqual(reencoded, bytes)) {
    throw new MlsError('NON_CANONICAL', 'not the canonical encoding');
  }
  return message;
}

/** Decodes any MLSMessage strictly: size limit, mls10, no trailing bytes, canonical encoding. Throws MlsError (TypeError for a negative or NaN limit). */
export function decodeMessage(bytes: Uint8Array, options: DecodeOptions = {}): MlsMessage {
  readHeader(bytes, resolveMaxBytes(options.maxBytes, DEFAULT_MAX_MESSAGE_BYTES));
  return decodeBody(bytes);
}

/** Encodes a decoded MLSMessage back to its wire bytes. */
export function encodeMessage(message: MlsMessage): Uint8Array {
  try {
    return encodeMlsMessage(message);
  } catch (error) {
    throw asMlsError(error, 'DECODE');
  }
}

const TS_MLS_WIRE_FORMAT = {
  public_message: 'mls_public_message',
  private_message: 'mls_private_message',
  welcome: 'mls_welcome',
  group_info: 'mls_group_info',
  key_package: 'mls_key_package',
} as const satisfies Record<WireFormat, TsMlsWireFormat>;

/**
 * ts-mls decodes only mls10 inside KeyPackage and GroupContext, so another version there fails
 * as "malformed". When the body decodes once that version reads mls10, the version is the one
 * thing wrong, and the caller hears UNSUPPORTED_VERSION instead of DECODE.
 */
function onlyInnerVersionWrong(bytes: Uint8Array, at: number): boolean {
  if (bytes.length < at + 2 || readUint16(bytes, at) === MLS10) return false;
  const patched = bytes.slice();
  patched[at] = 0;
  patched[at + 1] = MLS10;
  try {
    decodeBody(patched);
    return true;
  } catch {
    return false;
  }
}

/**
 * Decodes strictly and insists on one wire format, checked from the header before parsing the
 * body. `innerVersionAt` is the offset of a body's own ProtocolVersion field, if it has one.
 */
export function decodeAs<W extends WireFormat>(
  bytes: Uint8Array,
  expected: W,
  maxBytes: number,
  innerVersionAt?: number,
): MessageOf<(typeof TS_MLS_WIRE_FORMAT)[W]> {
  const actual = readHeader(bytes, maxBytes);
  if (actual !== expected) {
    throw new MlsError('WRONG_WIRE_FORMAT', `expected ${expected}, got ${actual}`);
  }
  let message: MLSMessage;
  try {
    message = decodeBody(bytes);
  } catch (error) {
    const decodeFailed = error instanceof MlsError && error.reason === 'DECODE';
    if (
      decodeFailed &&
      innerVersionAt !== undefined &&
      onlyInnerVersionWrong(bytes, innerVersionAt)
    ) {
      throw new MlsError('UNSUPPORTED_VERSION', `version ${readUint16(bytes, innerVersionAt)}`);
    }
    throw error;
  }
  if (message.wireformat !== TS_MLS_WIRE_FORMAT[expected]) {
    throw new MlsError('WRONG_WIRE_FORMAT', `expected ${expected}`);
  }
  return message as MessageOf<(typeof TS_MLS_WIRE_FORMAT)[W]>;
}
