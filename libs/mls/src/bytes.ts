import { Buffer } from 'node:buffer';

/**
 * Byte-wise equality; inputs here are public wire data, so timing does not matter. Whole trees'
 * leaves go through it, hence the native comparison (and the same array is equal to itself).
 */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

/**
 * Decoded fields are views into the caller's buffer (for a Node Buffer, possibly its shared
 * pool); results get their own copies so they neither pin nor alias the input.
 */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

/**
 * A string key for set membership of byte strings: one latin1 character per byte, made natively
 * (whole trees go through it, so a hex string built in JavaScript cost more than the rest).
 */
export function bytesKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/**
 * Runs a signature check, counting a throw as a failed verification: backends throw on
 * malformed keys or signatures (wrong length, off-curve), which is the sender's fault, not ours.
 */
export async function verifies(check: () => Promise<boolean>): Promise<boolean> {
  try {
    return await check();
  } catch {
    return false;
  }
}

/** Reads a big-endian uint16, treating bytes past the end as zero. */
export function readUint16(bytes: Uint8Array, at: number): number {
  return ((bytes[at] ?? 0) << 8) | (bytes[at + 1] ?? 0);
}
