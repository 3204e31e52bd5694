/** Why an {@link OpenMlsEngine} operation failed. The codes follow the ts-mls engine's where the meaning is shared. */
export type OpenMlsEngineErrorCode =
  /** The engine is in no group with that id. */
  | 'UNKNOWN_GROUP'
  /** The engine is already a member of a group with that id. */
  | 'GROUP_EXISTS'
  /** A commit removed this device; it can no longer read, send or commit in the group. */
  | 'NOT_A_MEMBER'
  /** The Welcome is encrypted to none of this engine's (unused) key packages. */
  | 'NO_MATCHING_KEY_PACKAGE'
  /** A key package to add does not decode or does not validate. */
  | 'INVALID_KEY_PACKAGE'
  /** None of the identities to remove sits in the group. */
  | 'UNKNOWN_MEMBER'
  /** MLS has no commit that removes its committer; another member must. */
  | 'CANNOT_REMOVE_SELF'
  /** The message belongs to another group. */
  | 'WRONG_GROUP'
  /** The message is for a later epoch: process the commits before it first. */
  | 'FUTURE_EPOCH'
  /** The message is for an epoch whose keys are gone, or is a commit for an epoch already left. */
  | 'EPOCH_TOO_OLD'
  /** The message was processed already (its keys are spent); it is not one of this engine's own. */
  | 'DUPLICATE_MESSAGE'
  /** The message does not decode, decrypt or verify, or is not a group message. */
  | 'INVALID_MESSAGE'
  /** The ciphersuite is not one core-crypto's WebAssembly build supports (1, 2, 3, 5, 7). */
  | 'UNSUPPORTED_CIPHERSUITE'
  /** The identity is not `<uuid>:<hex device>@<domain>` as core-crypto spells it (see README). */
  | 'UNSUPPORTED_IDENTITY'
  /** core-crypto cannot export what was asked (an exporter label other than "exporter", …). */
  | 'UNSUPPORTED_OPERATION'
  /** core-crypto 10.3 cannot export the GroupInfo of a group it just created (epoch 0). */
  | 'GROUP_INFO_UNAVAILABLE'
  /**
   * `send` failed (threw) or core-crypto failed after `send` had accepted: the commit was
   * discarded locally, but the delivery service may hold it. Also raised when that commit shows
   * up in the log later: this engine cannot follow it and must rejoin the group.
   */
  | 'COMMIT_LOST'
  /** Saved state does not decode, or its store cannot be brought back. */
  | 'INVALID_STATE'
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
