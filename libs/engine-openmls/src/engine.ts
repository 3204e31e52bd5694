/**
 * The OpenMLS engine: {@link MlsEngine} over @wireapp/core-crypto 10.3.0, OpenMLS compiled to
 * WebAssembly (GPL-3.0, hence this separate package).
 *
 * What core-crypto decides and this engine adapts to Parley:
 * - Commits go through a transport callback inside core-crypto's transaction; core-crypto merges
 *   the commit only if the callback returns, and discards it if the callback throws
 *   `MlsTransportError.MessageRejected`. Any other exception from a callback panics the
 *   WebAssembly module, so every failure of `send` is turned into that rejection here and
 *   re-thrown to the caller afterwards.
 * - Key packages come out bare and go in bare; Parley wants MLSMessage(key_package) both ways.
 *   Commits, GroupInfos (with the full ratchet tree) and Welcomes come out as MLSMessage already.
 * - core-crypto cannot decrypt its own messages (RFC 9420 forbids it) and reports the log's echo
 *   of them as a duplicate, like a replayed message; the engine recognises its own by digest.
 * - A commit that removes this device wipes the group from core-crypto's store; the engine keeps
 *   the fact, so it can say NOT_A_MEMBER rather than UNKNOWN_GROUP.
 */
import type {
  CommitBundle,
  CommitOutcome,
  CommitSender,
  MlsEngine,
  MlsEngineFactory,
  ProcessedMessage,
} from '@parley/client';
import type {
  ClientId,
  CommitBundle as CoreCryptoCommitBundle,
  ConversationId,
  CoreCrypto,
  CoreCryptoContext,
  CredentialRef,
  MlsTransport,
} from '@wireapp/core-crypto/browser';
import {
  isNode,
  isolatedRuntime,
  sharedRuntime,
  type CoreCryptoApi,
  type CoreCryptoDatabase,
  type CoreCryptoRuntime,
  type DatabaseOwner,
  type LoadOptions,
} from './core-crypto.js';
import { OpenMlsEngineError, type OpenMlsEngineErrorCode } from './errors.js';
import { decodeState, encodeState, type EngineState, type OwnMessage } from './state.js';
import { hasBlocks, readBlocks, sameBlocks, settledBlocks, writeBlocks } from './store.js';
import {
  ContentType,
  WireError,
  WireFormat,
  readFraming,
  unwrapKeyPackage,
  wireFormatOf,
  wrapKeyPackage,
  type Framing,
} from './wire.js';

/** The ciphersuite of every key package and group unless the factory is told otherwise. */
export const DEFAULT_CIPHERSUITE = 1;

/** Ciphersuites core-crypto 10.3.0's WebAssembly build can use (its Ed448 suites 4 and 6 fail). */
export const SUPPORTED_CIPHERSUITES: readonly number[] = Object.freeze([1, 2, 3, 5, 7]);

/**
 * Default key-package lifetime, not_after − not_before: 90 days, Parley's default maximum.
 * (core-crypto's own default is 84 days after an hour's backdating.)
 */
export const DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS = 90 * 24 * 60 * 60;

/** OpenMLS backdates not_before by this much; core-crypto's lifetime argument is what follows. */
const NOT_BEFORE_MARGIN_SECONDS = 60 * 60;

/** Own messages remembered at most (the oldest are forgotten first). */
const OWN_MESSAGE_LIMIT = 1000;

/** Lost own commits remembered at most. */
const LOST_COMMIT_LIMIT = 100;

const IDENTITY = /^([0-9a-fA-F-]{36}):([0-9a-fA-F]{1,16})@(.+)$/;

/** Options of {@link createOpenMlsEngineFactory}. */
export interface OpenMlsEngineOptions extends LoadOptions {
  /**
   * Key-package lifetime, not_after − not_before, in seconds; more than one hour (OpenMLS
   * backdates not_before by an hour). Default {@link DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS}.
   */
  keyPackageLifetimeSeconds?: number;
}

interface PendingSend {
  send: CommitSender;
  verdict?: 'accepted' | 'rejected';
  commitDigest?: string;
  /** What `send` (or turning core-crypto's bundle into Parley's) threw. */
  error?: { value: unknown };
}

function toHex(bytes: Uint8Array): string {
  let hex = '';
  for (const byte of bytes) hex += byte.toString(16).padStart(2, '0');
  return hex;
}

async function digest(bytes: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', Uint8Array.from(bytes))));
}

function randomBytes(length: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length));
}

/** The tag of core-crypto's MlsError inside a CoreCryptoError.Mls, if that is what this is. */
function mlsErrorTag(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { tag, inner } = error as { tag?: unknown; inner?: unknown };
  if (tag !== 'Mls' || typeof inner !== 'object' || inner === null) return undefined;
  const mlsError = (inner as { mlsError?: unknown }).mlsError;
  if (typeof mlsError !== 'object' || mlsError === null) return undefined;
  const mlsTag = (mlsError as { tag?: unknown }).tag;
  return typeof mlsTag === 'string' ? mlsTag : undefined;
}

function fail(code: OpenMlsEngineErrorCode, message: string, cause?: unknown): OpenMlsEngineError {
  return new OpenMlsEngineError(code, message, cause === undefined ? undefined : { cause });
}

/** Maps a core-crypto failure to the engine's codes; `fallback` for failures of the input. */
function translate(error: unknown, fallback: OpenMlsEngineErrorCode): OpenMlsEngineError {
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

/** An MLS client over core-crypto. Made by {@link OpenMlsEngineFactory}. */
export class OpenMlsEngine implements MlsEngine, DatabaseOwner {
  /** Which implementation this is. */
  readonly name = 'openmls' as const;

  private tail: Promise<unknown> = Promise.resolve();
  private retired = false;
  private pending: PendingSend | null = null;
  private credential: CredentialRef | null = null;

  private constructor(
    private readonly runtime: CoreCryptoRuntime,
    private readonly core: CoreCrypto,
    private readonly clientId: ClientId,
    private readonly path: string,
    private readonly key: Uint8Array,
    /** The device's basic-credential identity. */
    readonly identity: string,
    /** The ciphersuite of its key packages and groups. */
    readonly ciphersuite: number,
    private readonly keyPackageLifetimeSeconds: number,
    private readonly own: Map<string, OwnMessage>,
    private readonly lost: string[],
    private readonly removed: Map<string, bigint>,
  ) {}

  /**
   * Starts an engine on an opened database: a fresh one gets its credential (and so its
   * signature key pair) now; a restored one finds it in the store.
   */
  static async start(
    runtime: CoreCryptoRuntime,
    database: CoreCryptoDatabase,
    state: Omit<EngineState, 'blocks'>,
    fresh: boolean,
  ): Promise<OpenMlsEngine> {
    const { api } = runtime;
    const clientId = clientIdOf(runtime, state.identity);
    const engine = new OpenMlsEngine(
      runtime,
      api.CoreCrypto.new(database),
      clientId,
      state.path,
      state.key,
      state.identity,
      state.ciphersuite,
      state.keyPackageLifetimeSeconds,
      state.own,
      state.lost,
      state.removed,
    );
    const suite = api.cipherSuiteFromU16(state.ciphersuite);
    await engine.transaction(async (context) => {
      await context.mlsInit(clientId, engine.transport());
      if (fresh) {
        engine.credential = await context.addCredential(api.Credential.basic(suite, clientId));
      }
    });
    if (!fresh) {
      const [credential] = await engine.core.findCredentials({
        clientId,
        cipherSuite: suite,
        credentialType: api.CredentialType.Basic,
      });
      if (credential === undefined) {
        throw fail('INVALID_STATE', 'the restored store holds no credential for this identity');
      }
      engine.credential = credential;
    }
    runtime.databases.set(state.path, { database, owner: engine });
    return engine;
  }

  async signaturePublicKey(): Promise<Uint8Array> {
    return this.exclusive(() => this.core.publicKey(this.credentialRef()));
  }

  async generateKeyPackages(count: number): Promise<Uint8Array[]> {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new TypeError('count must be a whole number');
    }
    if (count === 0) return [];
    return this.exclusive(() => this.keyPackages(count));
  }

  /**
   * None: core-crypto 10.3.0 cannot mark a key package last-resort (its API has no such option,
   * and the extension is signed, so it cannot be added afterwards), and it deletes a key
   * package's private keys when a Welcome uses it, so a reused one could serve one Welcome only.
   */
  generateLastResortKeyPackage(): Promise<null> {
    return Promise.resolve(null);
  }

  /**
   * Creates the group at epoch 0. core-crypto 10.3.0 hands out a GroupInfo only inside a commit
   * bundle (for the epoch after the commit) and cannot export the one of epoch 0, so this returns
   * none: Parley then registers the conversation with its ciphersuite alone, and the first commit
   * bundle brings the GroupInfo.
   */
  async createGroup(groupId: Uint8Array): Promise<{ groupInfo: Uint8Array | null }> {
    await this.createLocalGroup(groupId);
    return { groupInfo: null };
  }

  /**
   * Creates a group at epoch 0 with this device alone, without a GroupInfo: its first commit
   * bundle (say, from {@link addMembers}) carries the GroupInfo of epoch 1.
   */
  async createLocalGroup(groupId: Uint8Array): Promise<void> {
    return this.exclusive(async () => {
      const conversation = this.conversationId(groupId);
      if (await this.core.conversationExists(conversation)) {
        throw fail('GROUP_EXISTS', 'already in a group with this id');
      }
      try {
        await this.transaction((context) =>
          context.createConversation(conversation, this.credentialRef()),
        );
      } catch (error) {
        throw translate(error, 'ENGINE_FAILURE');
      }
      this.removed.delete(toHex(groupId));
    });
  }

  async addMembers(
    groupId: Uint8Array,
    keyPackages: Uint8Array[],
    send: CommitSender,
  ): Promise<CommitOutcome> {
    if (keyPackages.length === 0) throw new TypeError('no key packages to add');
    const { api } = this.runtime;
    const parsed = keyPackages.map((message) => {
      try {
        return new api.KeyPackage(unwrapKeyPackage(message));
      } catch (error) {
        throw fail('INVALID_KEY_PACKAGE', 'a key package does not decode', error);
      }
    });
    return this.commit(groupId, send, 'INVALID_KEY_PACKAGE', (context, conversation) =>
      context.addClientsToConversation(conversation, parsed),
    );
  }

  async removeMembers(
    groupId: Uint8Array,
    identities: string[],
    send: CommitSender,
  ): Promise<CommitOutcome> {
    return this.commit(groupId, send, 'ENGINE_FAILURE', async (context, conversation) => {
      const wanted = new Set(identities);
      if (wanted.has(this.identity)) {
        throw fail('CANNOT_REMOVE_SELF', 'a commit cannot remove its committer');
      }
      const members = await context.getClientIds(conversation);
      const targets = members.filter((member) => wanted.has(identityOf(member)));
      if (targets.length === 0) {
        throw fail('UNKNOWN_MEMBER', 'none of these identities is in the group');
      }
      await context.removeClientsFromConversation(conversation, targets);
    });
  }

  async update(groupId: Uint8Array, send: CommitSender): Promise<CommitOutcome> {
    return this.commit(groupId, send, 'ENGINE_FAILURE', (context, conversation) =>
      context.updateKeyingMaterial(conversation),
    );
  }

  async joinFromWelcome(welcome: Uint8Array): Promise<{ groupId: Uint8Array }> {
    return this.exclusive(async () => {
      const { api } = this.runtime;
      let parsed: InstanceType<typeof api.Welcome>;
      try {
        if (wireFormatOf(welcome) !== WireFormat.welcome) throw new WireError('not a Welcome');
        parsed = new api.Welcome(welcome);
      } catch (error) {
        throw fail('INVALID_MESSAGE', 'the Welcome does not decode', error);
      }
      let conversation: ConversationId;
      try {
        conversation = await this.transaction((context) => context.processWelcomeMessage(parsed));
      } catch (error) {
        throw translate(error, 'INVALID_MESSAGE');
      }
      const groupId = conversation.copyBytes();
      this.removed.delete(toHex(groupId));
      return { groupId };
    });
  }

  async processMessage(groupId: Uint8Array, message: Uint8Array): Promise<ProcessedMessage> {
    return this.exclusive(async () => {
      let framing: Framing;
      try {
        framing = readFraming(message);
      } catch (error) {
        throw fail('INVALID_MESSAGE', 'not a group message', error);
      }
      if (toHex(framing.groupId) !== toHex(groupId)) {
        throw fail('WRONG_GROUP', 'the message belongs to another group');
      }
      const key = await digest(message);
      // core-crypto cannot read its own messages and calls their echo a duplicate; they are
      // recognised by their bytes instead.
      const own = this.own.get(key);
      if (own !== undefined) {
        return own.kind === 'commit'
          ? { kind: 'commit', epoch: own.epoch, own: true, removedSelf: false }
          : {
              kind: 'application',
              plaintext: Uint8Array.from(own.plaintext),
              senderIdentity: this.identity,
              own: true,
            };
      }
      if (this.lost.includes(key)) {
        throw fail(
          'COMMIT_LOST',
          'the delivery service took a commit this engine had discarded; rejoin the group',
        );
      }
      const conversation = await this.activeConversation(groupId);
      const current = await this.core.conversationEpoch(conversation);
      // Checked here rather than left to core-crypto, which would keep a future message in a
      // buffer of its own and hand it back inside a later commit's result.
      if (framing.epoch > current) {
        throw fail('FUTURE_EPOCH', `message for epoch ${framing.epoch}, at ${current}`);
      }
      if (framing.epoch < current && framing.contentType !== ContentType.application) {
        throw fail('EPOCH_TOO_OLD', `message for epoch ${framing.epoch}, at ${current}`);
      }
      let result: Awaited<ReturnType<CoreCryptoContext['decryptMessage']>>;
      try {
        result = await this.transaction((context) => context.decryptMessage(conversation, message));
      } catch (error) {
        throw translate(error, 'INVALID_MESSAGE');
      }
      const { DecryptedMessage } = this.runtime.api;
      if (DecryptedMessage.Text.instanceOf(result)) {
        return {
          kind: 'application',
          plaintext: result.inner.plaintext,
          senderIdentity: identityOf(result.inner.senderClientId),
          own: false,
        };
      }
      if (DecryptedMessage.Commit.instanceOf(result)) {
        const epoch = framing.epoch + 1n;
        const removedSelf = !result.inner.isActive;
        // core-crypto wipes a group that removed us; remember that we were in it.
        if (removedSelf) this.removed.set(toHex(groupId), epoch);
        return { kind: 'commit', epoch, own: false, removedSelf };
      }
      return { kind: 'proposal' };
    });
  }

  async encrypt(groupId: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    return this.exclusive(async () => {
      const conversation = await this.activeConversation(groupId);
      const data = Uint8Array.from(plaintext);
      let message: Uint8Array;
      try {
        message = await this.transaction((context) => context.encryptMessage(conversation, data));
      } catch (error) {
        throw translate(error, 'ENGINE_FAILURE');
      }
      this.remember(await digest(message), { kind: 'application', plaintext: data });
      return message;
    });
  }

  async epoch(groupId: Uint8Array): Promise<bigint> {
    return this.exclusive(async () => {
      const conversation = this.conversationId(groupId);
      if (await this.core.conversationExists(conversation)) {
        return this.core.conversationEpoch(conversation);
      }
      const removedAt = this.removed.get(toHex(groupId));
      if (removedAt !== undefined) return removedAt;
      throw fail('UNKNOWN_GROUP', 'not in this group');
    });
  }

  async members(groupId: Uint8Array): Promise<string[]> {
    return this.exclusive(async () => {
      const conversation = await this.activeConversation(groupId);
      // OpenMLS lists members in leaf order, skipping blank leaves.
      return (await this.core.getClientIds(conversation)).map(identityOf);
    });
  }

  async isMember(groupId: Uint8Array): Promise<boolean> {
    return this.exclusive(() => this.core.conversationExists(this.conversationId(groupId)));
  }

  /**
   * core-crypto exports only MLS-Exporter("exporter", "", length) (its exportSecretKey), so any
   * other label or a non-empty context throws UNSUPPORTED_OPERATION.
   */
  async exportSecret(
    groupId: Uint8Array,
    label: string,
    context: Uint8Array,
    length: number,
  ): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 1 || length > 0xffff) {
      throw new TypeError('length must be 1 to 65535');
    }
    if (label !== 'exporter' || context.length !== 0) {
      throw fail(
        'UNSUPPORTED_OPERATION',
        'core-crypto exports only MLS-Exporter("exporter", "", length)',
      );
    }
    return this.exclusive(async () => {
      const conversation = await this.activeConversation(groupId);
      const secret = await this.core.exportSecretKey(conversation, length);
      return secret.copyBytes();
    });
  }

  async saveState(): Promise<Uint8Array> {
    return this.exclusive(async () =>
      encodeState({
        identity: this.identity,
        ciphersuite: this.ciphersuite,
        keyPackageLifetimeSeconds: this.keyPackageLifetimeSeconds,
        path: this.path,
        key: this.key,
        own: this.own,
        lost: this.lost,
        removed: this.removed,
        blocks: await settledBlocks(this.path),
      }),
    );
  }

  /**
   * Stops this engine once what it is doing is done: a restore of its own state took over its
   * store. Later calls throw ENGINE_CLOSED.
   */
  retire(): Promise<void> {
    return this.exclusive(() => {
      this.retired = true;
      return Promise.resolve();
    });
  }

  // ---------------------------------------------------------------------------------------------

  /** Runs operations one at a time (core-crypto serialises its transactions anyway). */
  private exclusive<T>(operation: () => Promise<T>): Promise<T> {
    const guarded = () => {
      if (this.retired) {
        return Promise.reject(fail('ENGINE_CLOSED', 'a restore of this engine took over'));
      }
      return operation();
    };
    const run = this.tail.then(guarded, guarded);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /**
   * core-crypto's transaction, safe to throw in. core-crypto 10.3.0's `transaction()` sorts what
   * its callback throws with `Error.isError`, which Node 20 lacks: anything but a core-crypto
   * error is swallowed and the transaction resolves with `undefined` (after rolling back). So the
   * engine's own failures abort it with a core-crypto error and are re-thrown here.
   */
  private async transaction<T>(body: (context: CoreCryptoContext) => Promise<T>): Promise<T> {
    const { api } = this.runtime;
    let failure: { error: unknown } | undefined;
    let result: T;
    try {
      result = await this.core.transaction(async (context) => {
        try {
          return await body(context);
        } catch (error) {
          failure = { error };
          if (api.CoreCryptoError.instanceOf(error)) throw error;
          // (uniffi's error classes are Errors in all but their declared type.)
          const abort: Error = new api.CoreCryptoError.Other({ msg: 'aborted by the engine' });
          throw abort;
        }
      });
    } catch (error) {
      throw failure === undefined ? error : failure.error;
    }
    if (failure !== undefined) throw failure.error;
    return result;
  }

  private credentialRef(): CredentialRef {
    if (this.credential === null) throw fail('ENGINE_FAILURE', 'the engine has no credential');
    return this.credential;
  }

  private conversationId(groupId: Uint8Array): ConversationId {
    return new this.runtime.api.ConversationId(Uint8Array.from(groupId));
  }

  private async activeConversation(groupId: Uint8Array): Promise<ConversationId> {
    const conversation = this.conversationId(groupId);
    if (await this.core.conversationExists(conversation)) return conversation;
    if (this.removed.has(toHex(groupId))) {
      throw fail('NOT_A_MEMBER', 'this device was removed from the group');
    }
    throw fail('UNKNOWN_GROUP', 'not in this group');
  }

  private async keyPackages(count: number): Promise<Uint8Array[]> {
    const credential = this.credentialRef();
    // core-crypto takes the lifetime after not_before's backdating, in milliseconds (a uniffi
    // Duration; its TypeScript type says only "number").
    const lifetimeMs = (this.keyPackageLifetimeSeconds - NOT_BEFORE_MARGIN_SECONDS) * 1000;
    const made = await this.transaction(async (context) => {
      const out: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        out.push((await context.generateKeyPackage(credential, lifetimeMs)).serialize());
      }
      return out;
    });
    return made.map(wrapKeyPackage);
  }

  private remember(key: string, message: OwnMessage): void {
    this.own.delete(key);
    this.own.set(key, message);
    while (this.own.size > OWN_MESSAGE_LIMIT) {
      const oldest = this.own.keys().next().value;
      if (oldest === undefined) break;
      this.own.delete(oldest);
    }
  }

  private rememberLost(key: string): void {
    this.lost.push(key);
    if (this.lost.length > LOST_COMMIT_LIMIT)
      this.lost.splice(0, this.lost.length - LOST_COMMIT_LIMIT);
  }

  /**
   * Makes a commit in core-crypto's transaction; core-crypto calls the transport (below), which
   * calls `send`, and merges the commit only if the transport returns.
   */
  private commit(
    groupId: Uint8Array,
    send: CommitSender,
    invalidCode: OpenMlsEngineErrorCode,
    make: (context: CoreCryptoContext, conversation: ConversationId) => Promise<void>,
  ): Promise<CommitOutcome> {
    return this.exclusive(async () => {
      const conversation = await this.activeConversation(groupId);
      const baseEpoch = await this.core.conversationEpoch(conversation);
      const pending: PendingSend = { send };
      this.pending = pending;
      try {
        await this.transaction((context) => make(context, conversation));
      } catch (error) {
        if (pending.error !== undefined) {
          // The delivery service may have stored the commit before `send` failed; if the log
          // shows it later, this engine must say so rather than misread it.
          if (pending.commitDigest !== undefined) this.rememberLost(pending.commitDigest);
          throw pending.error.value;
        }
        if (pending.verdict === 'rejected' && mlsErrorTag(error) === 'MessageRejected') {
          return 'rejected';
        }
        if (pending.verdict === 'accepted' && pending.commitDigest !== undefined) {
          this.rememberLost(pending.commitDigest);
          throw fail('COMMIT_LOST', 'core-crypto failed after the commit was accepted', error);
        }
        throw translate(error, invalidCode);
      } finally {
        this.pending = null;
      }
      if (pending.verdict !== 'accepted' || pending.commitDigest === undefined) {
        throw fail('ENGINE_FAILURE', 'core-crypto made no commit');
      }
      this.remember(pending.commitDigest, { kind: 'commit', epoch: baseEpoch + 1n });
      return 'accepted';
    });
  }

  /**
   * The MlsTransport core-crypto calls inside its transaction. It must throw nothing but
   * MessageRejected: any other exception crosses uniffi as an unexpected callback error and
   * panics the WebAssembly module (seen: "UnexpectedUniFFICallbackError", then "cannot
   * recursively acquire mutex").
   */
  private transport(): MlsTransport {
    const { api } = this.runtime;
    // (uniffi's error classes are Errors in all but their declared type.)
    const reject = (reason: string): Error => new api.MlsTransportError.MessageRejected({ reason });
    return {
      sendCommitBundle: async (bundle: CoreCryptoCommitBundle): Promise<void> => {
        const pending = this.pending;
        // Only commits the engine asked for go out; core-crypto makes none on its own here.
        if (pending === null) throw reject('no commit was expected');
        try {
          const parley = toParleyBundle(api, bundle);
          pending.commitDigest = await digest(parley.commit);
          pending.verdict = (await pending.send(parley)) === 'accepted' ? 'accepted' : 'rejected';
        } catch (error) {
          pending.error = { value: error };
          throw reject('the commit could not be delivered');
        }
        if (pending.verdict !== 'accepted') throw reject('STALE_EPOCH');
      },
      // Only used for history sharing, which Parley does not enable.
      prepareForTransport: () => Promise.resolve(new Uint8Array(0)),
    };
  }
}

/** core-crypto's commit bundle as Parley's: every part an MLSMessage. */
function toParleyBundle(api: CoreCryptoApi, bundle: CoreCryptoCommitBundle): CommitBundle {
  if (wireFormatOf(bundle.commit) !== WireFormat.publicMessage) {
    throw new OpenMlsEngineError(
      'ENGINE_FAILURE',
      'core-crypto made a commit that is not a PublicMessage',
    );
  }
  const { groupInfo } = bundle;
  // Unencrypted, with the full ratchet tree: what Parley keeps for external joins.
  if (
    groupInfo.encryptionType !== api.GroupInfoEncryptionType.Plaintext ||
    groupInfo.ratchetTreeType !== api.RatchetTreeType.Full
  ) {
    throw new OpenMlsEngineError(
      'ENGINE_FAILURE',
      'core-crypto made a GroupInfo without the full tree',
    );
  }
  if (wireFormatOf(groupInfo.payload) !== WireFormat.groupInfo) {
    throw new OpenMlsEngineError(
      'ENGINE_FAILURE',
      'core-crypto made a GroupInfo that is not an MLSMessage',
    );
  }
  const out: CommitBundle = { commit: bundle.commit, groupInfo: groupInfo.payload };
  if (bundle.welcome !== undefined) out.welcome = bundle.welcome.serialize();
  return out;
}

function identityOf(clientId: ClientId): string {
  return new TextDecoder().decode(clientId.copyBytes());
}

/**
 * The core-crypto ClientId of a Parley identity. core-crypto builds the identity from a UUID,
 * a 64-bit device id and a domain, and writes the device id in hex *without leading zeros*; an
 * identity whose device part starts with 0 cannot be represented, and is refused rather than
 * silently changed (the server would refuse the key packages).
 */
function clientIdOf(runtime: CoreCryptoRuntime, identity: string): ClientId {
  const { api } = runtime;
  const match = IDENTITY.exec(identity);
  if (match === null) {
    throw fail('UNSUPPORTED_IDENTITY', 'the identity is not <uuid>:<hex device id>@<domain>');
  }
  const [, user = '', device = '', domain = ''] = match;
  let clientId: ClientId;
  try {
    clientId = new api.ClientId(
      new api.Uuid(user),
      api.DeviceId.fromHexString(device.padStart(16, '0')),
      domain,
    );
  } catch (error) {
    throw fail('UNSUPPORTED_IDENTITY', 'core-crypto refuses the identity', error);
  }
  if (identityOf(clientId) !== identity) {
    throw fail(
      'UNSUPPORTED_IDENTITY',
      `core-crypto would spell this identity ${identityOf(clientId)} (it drops leading zeros ` +
        'of the device id, and writes hex in lower case)',
    );
  }
  return clientId;
}

// Opening databases installs the VFS of a runtime, after which files added to IndexedDB are
// invisible to it; opens and the IndexedDB writes before them run one at a time.
let storeLock: Promise<unknown> = Promise.resolve();

function withStoreLock<T>(operation: () => Promise<T>): Promise<T> {
  const run = storeLock.then(operation, operation);
  storeLock = run.catch(() => undefined);
  return run;
}

function freshPath(): string {
  return `parley-openmls-${toHex(randomBytes(16))}`;
}

async function openDatabase(
  runtime: CoreCryptoRuntime,
  path: string,
  key: Uint8Array,
): Promise<CoreCryptoDatabase> {
  const { api } = runtime;
  const database = await api.Database.open(path, new api.DatabaseKey(key));
  runtime.vfsInstalled = true;
  return database;
}

/** Makes {@link OpenMlsEngine}s: fresh ones, or from {@link OpenMlsEngine.saveState} output. */
export class OpenMlsEngineFactory implements MlsEngineFactory {
  private readonly keyPackageLifetimeSeconds: number;

  constructor(private readonly options: OpenMlsEngineOptions = {}) {
    const lifetime = options.keyPackageLifetimeSeconds ?? DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS;
    if (!Number.isSafeInteger(lifetime) || lifetime <= NOT_BEFORE_MARGIN_SECONDS) {
      throw new TypeError('keyPackageLifetimeSeconds must be a whole number above 3600');
    }
    this.keyPackageLifetimeSeconds = lifetime;
  }

  /** A new engine (new signature key pair, new encrypted store) for the identity. */
  async create(identity: string, options?: { ciphersuite?: number }): Promise<OpenMlsEngine> {
    const ciphersuite = options?.ciphersuite ?? DEFAULT_CIPHERSUITE;
    if (!SUPPORTED_CIPHERSUITES.includes(ciphersuite)) {
      throw fail('UNSUPPORTED_CIPHERSUITE', `ciphersuite ${ciphersuite} is not supported`);
    }
    const runtime = await sharedRuntime(this.options);
    // Fails early, before a store is made for an identity core-crypto cannot spell.
    clientIdOf(runtime, identity);
    const path = freshPath();
    const key = randomBytes(32);
    return withStoreLock(async () => {
      const database = await openDatabase(runtime, path, key);
      return OpenMlsEngine.start(
        runtime,
        database,
        {
          identity,
          ciphersuite,
          keyPackageLifetimeSeconds: this.keyPackageLifetimeSeconds,
          path,
          key,
          own: new Map(),
          lost: [],
          removed: new Map(),
        },
        true,
      );
    });
  }

  /**
   * An engine continuing from saved state. In a new process (or page) the store is written back
   * into IndexedDB and opened. In the process that made the state, the store may still be open:
   * if it has not changed since the state was saved, the new engine takes it over (the old engine
   * then throws ENGINE_CLOSED); if it has, the saved copy is opened in a second core-crypto
   * instance (Node only; a browser page must reload instead).
   */
  async restore(bytes: Uint8Array): Promise<OpenMlsEngine> {
    let state: EngineState;
    try {
      state = decodeState(bytes);
    } catch (error) {
      throw fail('INVALID_STATE', 'saved engine state does not decode', error);
    }
    const runtime = await sharedRuntime(this.options);
    return withStoreLock(async () => {
      const live = runtime.databases.get(state.path);
      if (live !== undefined) {
        await live.owner?.retire();
        if (sameBlocks(await settledBlocks(state.path), state.blocks)) {
          return OpenMlsEngine.start(runtime, live.database, state, false);
        }
      } else if (!runtime.vfsInstalled) {
        // A browser reload finds the store still in IndexedDB; reuse it if nothing changed.
        if (
          (await hasBlocks(state.path)) &&
          sameBlocks(await readBlocks(state.path), state.blocks)
        ) {
          return OpenMlsEngine.start(
            runtime,
            await openDatabase(runtime, state.path, state.key),
            state,
            false,
          );
        }
        return this.openCopy(runtime, state);
      }
      if (!isNode()) {
        throw fail(
          'INVALID_STATE',
          'this page already uses a newer version of the store; reload the page to restore it',
        );
      }
      return this.openCopy(await isolatedRuntime(this.options), state);
    });
  }

  /** Writes the saved blocks into IndexedDB under a new name and opens them (VFS not loaded yet). */
  private async openCopy(runtime: CoreCryptoRuntime, state: EngineState): Promise<OpenMlsEngine> {
    const path = freshPath();
    await writeBlocks(path, state.blocks);
    const database = await openDatabase(runtime, path, state.key);
    return OpenMlsEngine.start(runtime, database, { ...state, path }, false);
  }
}

/** A factory of OpenMLS engines. */
export function createOpenMlsEngineFactory(options?: OpenMlsEngineOptions): OpenMlsEngineFactory {
  return new OpenMlsEngineFactory(options);
}
