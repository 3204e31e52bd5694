/** The failures of the OpenMLS engine, and how core-crypto's errors map to them. */
import type { MlsEngineErrorCode } from '@parley/client';
import { WireError } from './wire.js';
/** Why an {@link OpenMlsEngine} operation failed. The codes follow the ts-mls engine's where the meaning is shared. */
export type OpenMlsEngineErrorCode =
  | MlsEngineErrorCode
  /** The message was processed already (its keys are spent); it is not one of this engine's own. */
  | 'DUPLICATE_MESSAGE'
  /** The identity is not `<uuid>:<hex device>@<domain>` as core-crypto spells it (see README). */
  | 'UNSUPPORTED_IDENTITY'
  /** core-crypto cannot export what was asked (an exporter label other than "exporter", …). */
  | 'UNSUPPORTED_OPERATION'
  /**
   * `send` failed (threw) or core-crypto failed after `send` had accepted: the commit was
   * discarded locally, but the delivery service may hold it. Also raised when that commit shows
   * up in the log later: this engine cannot follow it and must rejoin the group.
   */
  | 'COMMIT_LOST'
  /** A later {@link OpenMlsEngineFactory.restore} of this engine's state took over its store. */
  | 'ENGINE_CLOSED'
  /** core-crypto failed in a way none of the codes above describes. */
  | 'ENGINE_FAILURE';

/** A failure of the OpenMLS engine, with a stable code. Messages never hold key or payload bytes. */
export class OpenMlsEngineError extends Error {
  override readonly name = 'OpenMlsEngineError';

  constructor(
    /** Stable code of the failure. */
    readonly code: OpenMlsEngineErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A new engine error. */
export function fail(
  code: OpenMlsEngineErrorCode,
  message: string,
  cause?: unknown,
): OpenMlsEngineError {
  return new OpenMlsEngineError(code, message, cause === undefined ? undefined : { cause });
}

/** The tag of core-crypto's MlsError inside a CoreCryptoError.Mls, if that is what this is. */
export function mlsErrorTag(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { tag, inner } = error as { tag?: unknown; inner?: unknown };
  if (tag !== 'Mls' || typeof inner !== 'object' || inner === null) return undefined;
  const mlsError = (inner as { mlsError?: unknown }).mlsError;
  if (typeof mlsError !== 'object' || mlsError === null) return undefined;
  const mlsTag = (mlsError as { tag?: unknown }).tag;
  return typeof mlsTag === 'string' ? mlsTag : undefined;
}

/** Maps a core-crypto failure to the engine's codes; `fallback` for failures of the input. */
export function translate(error: unknown, fallback: OpenMlsEngineErrorCode): OpenMlsEngineError {
  if (error instanceof OpenMlsEngineError) return error;
  switch (mlsErrorTag(error)) {
    case 'DuplicateMessage':
      return fail('DUPLICATE_MESSAGE', 'the message was processed already', error);
    case 'BufferedFutureMessage':
    case 'BufferedCommit':
    case 'WrongEpoch':
      return fail('FUTURE_EPOCH', 'the message is for a later epoch', error);
    case 'MessageEpochTooOld':
    case 'StaleCommit':
    case 'StaleProposal':
      return fail('EPOCH_TOO_OLD', 'the message is for an epoch already left', error);
    case 'OrphanWelcome':
      return fail('NO_MATCHING_KEY_PACKAGE', 'the Welcome names none of our key packages', error);
    case 'ConversationAlreadyExists':
      return fail('GROUP_EXISTS', 'already in a group with this id', error);
    case undefined:
      if (error instanceof WireError) return fail(fallback, error.message, error);
      return fail(fallback, 'core-crypto refused', error);
    default:
      return fail(fallback, 'core-crypto refused', error);
  }
}
