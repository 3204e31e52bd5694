/** The failures of the ts-mls engine. */
import type { MlsEngineErrorCode } from '../mls-engine.js';

/** Why a TsMlsEngine operation failed. */
export type TsMlsEngineErrorCode =
  | MlsEngineErrorCode
  /** The delivery service accepted a commit after the engine had processed another one for its epoch. */
  | 'COMMIT_CONFLICT';

/** A failure of the ts-mls engine, with a stable code. Messages never hold key or payload bytes. */
export class TsMlsEngineError extends Error {
  override readonly name = 'TsMlsEngineError';

  constructor(
    /** Stable code of the failure. */
    readonly code: TsMlsEngineErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
