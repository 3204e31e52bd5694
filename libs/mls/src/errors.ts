/** Stable codes for every way MLS input can be refused; the server maps them to its own domain errors. */
export type MlsErrorReason =
  | 'DECODE'
  | 'NON_CANONICAL'
  | 'TRAILING_BYTES'
  | 'TOO_LARGE'
  | 'WRONG_WIRE_FORMAT'
  | 'WRONG_CONTENT_TYPE'
  | 'UNSUPPORTED_VERSION'
  | 'UNSUPPORTED_CIPHERSUITE'
  | 'BAD_SIGNATURE'
  | 'BAD_LEAF_SIGNATURE'
  | 'NOT_YET_VALID'
  | 'EXPIRED'
  | 'LIFETIME_TOO_LONG'
  | 'UNSUPPORTED_CREDENTIAL'
  | 'INVALID_LEAF'
  | 'MISSING_RATCHET_TREE'
  | 'INVALID_TREE'
  | 'WRONG_SENDER'
  | 'WRONG_SIGNER'
  | 'TRANSCRIPT_MISMATCH'
  | 'CONFIRMATION_MISMATCH'
  | 'LEAF_REWRITTEN'
  | 'MISSING_EXTERNAL_INIT'
  | 'EXTERNAL_COMMIT_SHAPE';

/** Thrown for any bytes that are not what they claim to be; `reason` is a stable code. */
export class MlsError extends Error {
  /** The stable code; match on this, never on `message`. */
  readonly reason: MlsErrorReason;
  /** Human-readable context for logs; never contains payload bytes. */
  readonly detail?: string;

  constructor(reason: MlsErrorReason, detail?: string) {
    super(detail === undefined ? reason : `${reason}: ${detail}`);
    this.name = 'MlsError';
    this.reason = reason;
    if (detail !== undefined) this.detail = detail;
  }
}

/**
 * Turns whatever a third-party decoder or crypto backend threw into an MlsError, so callers
 * only ever see one error type. ts-mls throws its own errors, TypeErrors on unknown enum
 * values and RangeErrors on out-of-range reads; none of those may escape.
 */
export function asMlsError(error: unknown, fallback: MlsErrorReason): MlsError {
  if (error instanceof MlsError) return error;
  if (error instanceof Error) {
    // Library messages are static text, but cap them anyway: a detail goes into logs.
    return new MlsError(fallback, `${error.name}: ${error.message}`.slice(0, 200));
  }
  return new MlsError(fallback);
}
