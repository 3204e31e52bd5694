/**
 * The one interface the SDK drives MLS through. Two engines implement it: OpenMLS compiled to
 * WebAssembly (via @wireapp/core-crypto, GPL-3.0, in its own package) and ts-mls (MIT). Every
 * MLS object crosses it as RFC 9420 MLSMessage bytes, exactly as the Parley server takes them.
 *
 * Commits follow the delivery service's rule that one commit wins each epoch: an engine makes a
 * commit, hands the bundle to `send`, and adopts the new epoch only if `send` resolves with
 * 'accepted'; on 'rejected' (STALE_EPOCH) it discards the commit and stays where it was.
 */
export interface MlsEngine {
  /** Which implementation this is. */
  readonly name: 'openmls' | 'ts-mls';

  /** The device's basic-credential identity, `<userUUID>:<deviceIdHex>@<domain>`. */
  readonly identity: string;

  /** The RFC 9420 ciphersuite id every key package and group of this engine uses. */
  readonly ciphersuite: number;

  /** The device's signature public key (the same in all its key packages and leaves). */
  signaturePublicKey(): Promise<Uint8Array>;

  /** Fresh key packages, MLSMessage(key_package) bytes; private parts stay in the engine. */
  generateKeyPackages(count: number): Promise<Uint8Array[]>;

  /**
   * One key package carrying the last_resort extension (type 0x000A), reusable by design; null
   * when the engine cannot mark one (the server refuses an unmarked key package in that slot).
   */
  generateLastResortKeyPackage(): Promise<Uint8Array | null>;

  /**
   * Creates a group (epoch 0, this device alone); returns its GroupInfo with the ratchet tree, or
   * null when the engine cannot export one (core-crypto): the server then takes the ciphersuite
   * alone and the first commit bundle brings the GroupInfo.
   */
  createGroup(groupId: Uint8Array): Promise<{ groupInfo: Uint8Array | null }>;

  /** Commits Adds for the key packages; see {@link CommitSender}. */
  addMembers(
    groupId: Uint8Array,
    keyPackages: Uint8Array[],
    send: CommitSender,
  ): Promise<CommitOutcome>;

  /** Commits Removes for every leaf holding one of the identities. */
  removeMembers(
    groupId: Uint8Array,
    identities: string[],
    send: CommitSender,
  ): Promise<CommitOutcome>;

  /** Commits a path update (fresh keys for this device). */
  update(groupId: Uint8Array, send: CommitSender): Promise<CommitOutcome>;

  /** Joins from a Welcome (MLSMessage) addressed to one of this engine's key packages. */
  joinFromWelcome(welcome: Uint8Array): Promise<{ groupId: Uint8Array }>;

  /**
   * Joins a group by external commit (RFC 9420 §12.4.3.2) from its GroupInfo (MLSMessage with
   * external_pub and the ratchet tree), handing the commit bundle to `send`; the group is kept
   * only on 'accepted' (on 'rejected' — STALE_EPOCH — the caller retries with a fresh GroupInfo).
   */
  joinByExternalCommit(
    groupInfo: Uint8Array,
    send: CommitSender,
  ): Promise<{ groupId: Uint8Array; outcome: 'accepted' | 'rejected' }>;

  /**
   * Processes a group message from the conversation log: a PublicMessage commit (advances the
   * epoch) or a PrivateMessage (decrypts). The engine's own messages, echoed back by the log,
   * are recognised and reported with `own: true` rather than failing.
   */
  processMessage(groupId: Uint8Array, message: Uint8Array): Promise<ProcessedMessage>;

  /** Encrypts an application message (PrivateMessage MLSMessage bytes) in the current epoch. */
  encrypt(groupId: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array>;

  /** The group's current epoch. */
  epoch(groupId: Uint8Array): Promise<bigint>;

  /** Identities of the members, in leaf order, without blank leaves. */
  members(groupId: Uint8Array): Promise<string[]>;

  /** Whether this device is (still) in the group. */
  isMember(groupId: Uint8Array): Promise<boolean>;

  /** MLS-Exporter(label, context, length) of the current epoch (RFC 9420 §8.5). */
  exportSecret(
    groupId: Uint8Array,
    label: string,
    context: Uint8Array,
    length: number,
  ): Promise<Uint8Array>;

  /** Everything needed to continue after a restart; the SDK encrypts it at rest. */
  saveState(): Promise<Uint8Array>;
}

/** Delivers a commit bundle to the delivery service; says whether it won its epoch. */
export type CommitSender = (bundle: CommitBundle) => Promise<'accepted' | 'rejected'>;

/** What a commit produces, as MLSMessage bytes ready to submit. */
export interface CommitBundle {
  /** PublicMessage commit. */
  commit: Uint8Array;
  /** GroupInfo of the new epoch with the ratchet_tree extension. */
  groupInfo: Uint8Array;
  /** Welcome for added members, if any. */
  welcome?: Uint8Array;
}

/** Whether the commit won its epoch (and the engine moved to it) or was discarded. */
export type CommitOutcome = 'accepted' | 'rejected';

/** What processing one log entry did. */
export type ProcessedMessage =
  | { kind: 'commit'; epoch: bigint; own: boolean; removedSelf: boolean }
  | { kind: 'application'; plaintext: Uint8Array; senderIdentity: string | null; own: boolean }
  | { kind: 'proposal' };

/** Makes an engine for a device, fresh or from saved state. */
export interface MlsEngineFactory {
  /** A new engine (new signature key pair) for the identity. */
  create(identity: string, options?: { ciphersuite?: number }): Promise<MlsEngine>;
  /** An engine continuing from {@link MlsEngine.saveState} output. */
  restore(state: Uint8Array): Promise<MlsEngine>;
}

/** Failures every engine reports, with the same code for the same meaning. */
export type MlsEngineErrorCode =
  /** The engine is in no group with that id. */
  | 'UNKNOWN_GROUP'
  /** The engine is already a member of a group with that id. */
  | 'GROUP_EXISTS'
  /** A commit removed this device; it can no longer send or commit in the group. */
  | 'NOT_A_MEMBER'
  /** The Welcome is encrypted to none of this engine's key packages. */
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
  /** The message does not decode, decrypt or verify, or is not a group message. */
  | 'INVALID_MESSAGE'
  /** The ciphersuite is not one the engine supports. */
  | 'UNSUPPORTED_CIPHERSUITE'
  /** Saved state does not decode (or cannot be brought back). */
  | 'INVALID_STATE';
