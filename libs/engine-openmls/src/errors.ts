import type { MlsEngineErrorCode } from '@parley/client';
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
