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
 *
 * This module is the engine's behaviour; making and restoring engines is factory.ts, the
 * saved-state format state.ts (with the store copy in store.ts), joins join.ts, identities
 * identity.ts, key packages key-packages.ts and errors errors.ts.
 */
import type {
  CommitBundle,
  CommitOutcome,
  CommitSender,
  MlsEngine,
  ProcessedMessage,
} from '@parley/client';
import { SerialQueue, setBounded, toHex } from '@parley/protocol';
import type {
  ClientId,
  CommitBundle as CoreCryptoCommitBundle,
  ConversationId,
  CoreCrypto,
  CoreCryptoContext,
  CredentialRef,
  MlsTransport,
} from '@wireapp/core-crypto/browser';
import type {
  CoreCryptoApi,
  CoreCryptoDatabase,
  CoreCryptoRuntime,
  DatabaseOwner,
} from './core-crypto.js';
import {
  OpenMlsEngineError,
  fail,
  mlsErrorTag,
  translate,
  type OpenMlsEngineErrorCode,
} from './errors.js';
import { clientIdOf, identityOf } from './identity.js';
import { joinGroup, parseWelcome } from './join.js';
import { generateKeyPackages } from './key-packages.js';
import { encodeState, type EngineState, type OwnMessage } from './state.js';
import { settledBlocks } from './store.js';
import {
  ContentType,
  WireFormat,
  readFraming,
  readGroupInfoHead,
  unwrapGroupInfo,
  unwrapKeyPackage,
  wireFormatOf,
  type Framing,
} from './wire.js';

/** Own messages remembered at most (the oldest are forgotten first). */
const OWN_MESSAGE_LIMIT = 1000;

/** Lost own commits remembered at most. */
const LOST_COMMIT_LIMIT = 100;

interface PendingSend {
  send: CommitSender;
  verdict?: 'accepted' | 'rejected';
  commitDigest?: string;
  /** What `send` (or turning core-crypto's bundle into Parley's) threw. */
  error?: { value: unknown };
}

async function digest(bytes: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', Uint8Array.from(bytes))));
}

/** An MLS client over core-crypto. Made by the OpenMlsEngineFactory (factory.ts). */
export class OpenMlsEngine implements MlsEngine, DatabaseOwner {
  /** Which implementation this is. */
  readonly name = 'openmls' as const;

  private readonly queue = new SerialQueue();
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
      const parsed = parseWelcome(this.runtime.api, welcome);
      let conversation: ConversationId;
      try {
        conversation = await this.transaction((context) => joinGroup(context, parsed));
      } catch (error) {
        throw translate(error, 'INVALID_MESSAGE');
      }
      const groupId = conversation.copyBytes();
      this.removed.delete(toHex(groupId));
      return { groupId };
    });
  }

  /**
   * Joins a group by external commit (RFC 9420 §12.4.3.2) with core-crypto's
   * joinByExternalCommit: core-crypto makes the commit and hands the bundle to the transport,
   * which calls `send`; it keeps the group only if the transport returns.
   */
  async joinByExternalCommit(
    groupInfo: Uint8Array,
    send: CommitSender,
  ): Promise<{ groupId: Uint8Array; outcome: CommitOutcome }> {
    let framing: { groupId: Uint8Array; epoch: bigint };
    try {
      if (wireFormatOf(groupInfo) !== WireFormat.groupInfo) throw new Error('not a GroupInfo');
      framing = readGroupInfoHead(groupInfo);
    } catch (error) {
      throw fail('INVALID_MESSAGE', 'the GroupInfo does not decode', error);
    }
    const { groupId } = framing;
    return this.exclusive(async () => {
      if (await this.core.conversationExists(this.conversationId(groupId))) {
        throw fail('GROUP_EXISTS', 'already in a group with this id');
      }
      let parsed: InstanceType<CoreCryptoApi['GroupInfo']>;
      try {
        // core-crypto takes the bare GroupInfo, without the MLSMessage header.
        parsed = new this.runtime.api.GroupInfo(unwrapGroupInfo(groupInfo));
      } catch (error) {
        throw fail('INVALID_MESSAGE', 'the GroupInfo does not decode', error);
      }
      const pending: PendingSend = { send };
      this.pending = pending;
      const credential = this.credentialRef();
      try {
        await this.transaction((context) => context.joinByExternalCommit(parsed, credential));
      } catch (error) {
        if (pending.error !== undefined) throw pending.error.value;
        if (pending.verdict === 'rejected' && mlsErrorTag(error) === 'MessageRejected') {
          return { groupId, outcome: 'rejected' as const };
        }
        throw translate(error, 'INVALID_MESSAGE');
      } finally {
        this.pending = null;
      }
      if (pending.verdict !== 'accepted' || pending.commitDigest === undefined) {
        throw fail('ENGINE_FAILURE', 'core-crypto made no external commit');
      }
      this.removed.delete(toHex(groupId));
      this.remember(pending.commitDigest, { kind: 'commit', epoch: framing.epoch + 1n });
      return { groupId, outcome: 'accepted' as const };
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
    return this.queue.run(() => {
      if (this.retired) throw fail('ENGINE_CLOSED', 'a restore of this engine took over');
      return operation();
    });
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

  private keyPackages(count: number): Promise<Uint8Array[]> {
    const credential = this.credentialRef();
    return this.transaction((context) =>
      generateKeyPackages(context, credential, this.keyPackageLifetimeSeconds, count),
    );
  }

  private remember(key: string, message: OwnMessage): void {
    setBounded(this.own, key, message, OWN_MESSAGE_LIMIT);
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
