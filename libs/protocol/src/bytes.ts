/**
 * Byte encodings both sides use, without Node's Buffer (the SDK also runs in browsers). Base64
 * is the API's `Bytes` scalar: standard alphabet, padded (RFC 4648 §4).
 */

// The `Bytes` scalar's form: groups of four, the last one padded; no whitespace, no URL alphabet.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const HEX_OF_BYTE = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));
// String.fromCharCode takes its arguments on the stack: large inputs go in slices.
const CHUNK = 0x8000;

/** Whether a string is padded standard base64, the form the server accepts for `Bytes`. */
export function isBase64(text: string): boolean {
  return BASE64.test(text);
}

/** Padded standard base64 of bytes. */
export function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}

/** Bytes of padded standard base64; throws `TypeError` on anything else (`atob` is lenient). */
export function fromBase64(text: string): Uint8Array {
  if (!isBase64(text)) throw new TypeError('not padded standard base64');
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Lower-case hex of bytes (a table: whole ratchet trees go through it as map keys). */
export function toHex(bytes: Uint8Array): string {
  // Joined, not grown with +=: V8 keeps a string grown piece by piece as a tree of one 32-byte
  // node per piece, and a map key made that way keeps its whole tree (16 times the hex's size).
  const pairs = new Array<string>(bytes.length);
  for (let i = 0; i < bytes.length; i++) pairs[i] = HEX_OF_BYTE[bytes[i] ?? 0] ?? '';
  return pairs.join('');
}

/** Bytes of hex (either case, even length); throws `TypeError` on anything else. */
export function fromHex(hex: string): Uint8Array {
  if (!HEX.test(hex)) throw new TypeError('not an even number of hex digits');
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++)
    bytes[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** The bytes of every part, one after another, in a new array. */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Byte-wise equality. The time taken depends on the length only, not on where the first
 * difference is, so comparing a secret-derived value does not leak its prefix.
 */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}
