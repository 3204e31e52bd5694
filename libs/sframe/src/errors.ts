/**
 * The one error type of this library. Every failure — malformed input, an unknown key, a tag
 * that does not verify, a replayed frame, WebCrypto refusing something — surfaces as an
 * `SFrameError` with a stable `code`, so that a media pipeline can count and drop bad frames
 * without catching anything else.
 */

/**
 * Every code an {@link SFrameError} carries:
 *
 * - `INVALID_ARGUMENT`: a caller's value has the wrong type or range (a KID or CTR outside
 *   0…2^64−1, a frame that is not bytes, a replay window that is not a positive integer).
 * - `TRUNCATED_HEADER`: the frame ends before the header its config byte announces.
 * - `MALFORMED_HEADER`: the header is not in the minimal form RFC 9605 §4.3 requires (a value
 *   below 8 in an extended field, or a length with leading zero bytes).
 * - `TRUNCATED_CIPHERTEXT`: after the header, fewer bytes than the suite's tag.
 * - `UNKNOWN_KID`: no key is held for the frame's KID (never added, or removed).
 * - `DUPLICATE_KID`: a key is already held for that KID (remove it first; re-adding would
 *   reset its replay window).
 * - `AUTHENTICATION_FAILED`: the tag does not verify (tampered header, metadata, ciphertext
 *   or tag, or the wrong key).
 * - `REPLAY`: the frame's counter was already accepted for this KID, or is too far behind the
 *   highest one accepted (outside the replay window).
 * - `COUNTER_EXHAUSTED`: the sender has used every counter of its key (2^64 frames); rekey.
 * - `UNSUPPORTED_SUITE`: not one of the cipher suites of RFC 9605 §4.5 (0x0001–0x0005).
 * - `BAD_KEY`: a base key that is not usable (empty, or refused by WebCrypto).
 * - `CRYPTO_FAILURE`: WebCrypto failed where no input of ours explains it (for instance
 *   `crypto.subtle` is missing outside a secure context).
 */
export const SFRAME_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'TRUNCATED_HEADER',
  'MALFORMED_HEADER',
  'TRUNCATED_CIPHERTEXT',
  'UNKNOWN_KID',
  'DUPLICATE_KID',
  'AUTHENTICATION_FAILED',
  'REPLAY',
  'COUNTER_EXHAUSTED',
  'UNSUPPORTED_SUITE',
  'BAD_KEY',
  'CRYPTO_FAILURE',
] as const;

/** One of {@link SFRAME_ERROR_CODES}. */
export type SFrameErrorCode = (typeof SFRAME_ERROR_CODES)[number];

/** A failure of SFrame encoding, key handling, encryption or decryption, with a stable code. */
export class SFrameError extends Error {
  override readonly name = 'SFrameError';

  constructor(
    readonly code: SFrameErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message}`, options);
  }
}

/** Whether a value is an {@link SFrameError}, optionally with the given code. */
export function isSFrameError(value: unknown, code?: SFrameErrorCode): value is SFrameError {
  return value instanceof SFrameError && (code === undefined || value.code === code);
}
