/**
 * The ts-mls engine (MIT, pure TypeScript): {@link MlsEngine} over ts-mls 1.6.4 — its behaviour.
 * Key packages, the saved-state format, the join, identities and errors have their own modules
 * in this folder.
 *
 * What ts-mls does by default and Parley cannot use is overridden: key packages get a real
 * lifetime and fixed capabilities (key-packages.ts); commits go out as PublicMessage with the
 * ratchet tree in the Welcome's GroupInfo; a commit's new state is kept aside until the delivery
 * service accepts it. ts-mls cannot decrypt its own messages, so the engine remembers what it
 * sent and recognises the conversation log's echo of it.
 */
import { SerialQueue, bytesEqual, setBounded, toHex } from '@parley/protocol';
import { sha256 } from '@noble/hashes/sha2.js';
import {
  acceptAll,
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultAuthenticationService,
  defaultKeyPackageEqualityConfig,
  defaultKeyRetentionConfig,
  defaultLifetimeConfig,
  defaultPaddingConfig,
  emptyPskIndex,
  encodeMlsMessage,
  joinGroupExternal,
  mlsExporter,
  processMessage,
  type CiphersuiteImpl,
  type CiphersuiteName,
  type ClientConfig,
  type ClientState,
  type KeyRetentionConfig,
  type MLSMessage,
  type PrivateKeyPackage,
  type PrivateMessage,
  type Proposal,
} from 'ts-mls';
import { decryptSenderData } from 'ts-mls/privateMessage.js';
import type {
  CommitBundle,
  CommitOutcome,
  CommitSender,
  MlsEngine,
  MlsEngineFactory,
  ProcessedMessage,
} from '../mls-engine.js';
import { suiteImpl, suiteName } from './ciphersuites.js';
import { TsMlsEngineError, type TsMlsEngineErrorCode } from './errors.js';
import { basicIdentity, leafIdentities } from './identity.js';
import { groupInfoForExternalJoins, readingRfcExternalPub } from './external-pub.js';
import { joinFromWelcome } from './join.js';
import {
  DEFAULT_KEY_PACKAGE_LIFETIME,
  forgetExpiredKeyPackages,
  keyPackageToHold,
  newKeyPackage,
  type HeldKeyPackage,
  type KeyPackageMaker,
  type SignatureKeyPair,
} from './key-packages.js';
import { decodeEngineState, encodeEngineState, type OwnMessage } from './state.js';

/** The ciphersuite of every key package and group unless the factory is told otherwise. */
export const DEFAULT_CIPHERSUITE = 1;

/** Own messages remembered per group at most (the oldest are forgotten first). */
const OWN_MESSAGE_LIMIT = 1000;

/** Commits per group that may await the delivery service's verdict at once. */
const PENDING_COMMIT_LIMIT = 8;

/** Options of {@link createTsMlsEngineFactory}. */
export interface TsMlsEngineOptions {
  /**
   * ts-mls's key retention: skipped generations kept per sender (out-of-order messages within
   * an epoch), how far a sender's ratchet may jump ahead, and how many past epochs keep their
   * receiving keys. Defaults are ts-mls's: 10, 200 and 4.
   */
  keyRetention?: Partial<KeyRetentionConfig>;
  /** Key-package lifetime around "now"; default {@link DEFAULT_KEY_PACKAGE_LIFETIME}. */
  keyPackageLifetime?: { beforeSeconds: number; afterSeconds: number };
}

interface Settings {
  clientConfig: ClientConfig;
  lifetime: { beforeSeconds: number; afterSeconds: number };
}

/** Own messages and pending commits are recognised by a digest of their exact bytes. */
function digest(bytes: Uint8Array): string {
  return toHex(sha256(bytes));
}

function decodeMessage(
  bytes: Uint8Array,
  what: string,
  code: TsMlsEngineErrorCode = 'INVALID_MESSAGE',
): MLSMessage {
  let decoded: [MLSMessage, number] | undefined;
  try {
    decoded = decodeMlsMessage(bytes, 0);
  } catch (error) {
    throw new TsMlsEngineError(code, `${what} does not decode`, { cause: error });
  }
  if (decoded?.[1] !== bytes.length) {
    throw new TsMlsEngineError(code, `${what} does not decode as one MLSMessage`);
  }
  return decoded[0];
}

interface GroupEntry {
  /** The confirmed state: only a commit the delivery service took (or the log showed) moves it. */
  state: ClientState;
  cs: CiphersuiteImpl;
  /** States of own commits made from `state`, awaiting their verdict, by digest of the commit. */
  pending: Map<string, ClientState>;
  /** Own messages by digest, oldest first. */
  own: Map<string, OwnMessage>;
}

/** The ts-mls implementation of {@link MlsEngine}; made by {@link tsMlsEngineFactory}. */
export class TsMlsEngine implements MlsEngine {
  /** Which implementation this is. */
  readonly name = 'ts-mls';

  private readonly groups = new Map<string, GroupEntry>();
  /** Private halves of the key packages handed out, by hex KeyPackageRef. */
  private readonly keyPackages = new Map<string, HeldKeyPackage>();
  /** Operations run one at a time: each reads the state, awaits crypto, then writes it back. */
  private readonly queue = new SerialQueue();

  private constructor(
    /** The device's basic-credential identity. */
    readonly identity: string,
    /** RFC 9420 ciphersuite id of every key package and group this engine makes. */
    readonly ciphersuite: number,
    private readonly suite: CiphersuiteName,
    private readonly cs: CiphersuiteImpl,
    private readonly signatureKeyPair: SignatureKeyPair,
    private readonly settings: Settings,
  ) {}

  /** @internal A new engine with a fresh signature key pair; use the factory. */
  static async create(
    identity: string,
    ciphersuite: number,
    settings: Settings,
  ): Promise<TsMlsEngine> {
    const suite = suiteName(ciphersuite);
    const cs = await suiteImpl(suite);
    const keyPair = await cs.signature.keygen();
    return new TsMlsEngine(identity, ciphersuite, suite, cs, keyPair, settings);
  }

  /** @internal An engine from {@link TsMlsEngine.saveState} output; use the factory. */
  static async restore(state: Uint8Array, settings: Settings): Promise<TsMlsEngine> {
    try {
      const saved = decodeEngineState(state, settings.clientConfig);
      const suite = suiteName(saved.ciphersuite);
      const engine = new TsMlsEngine(
        saved.identity,
        saved.ciphersuite,
        suite,
        await suiteImpl(suite),
        saved.signatureKeyPair,
        settings,
      );
      for (const [ref, held] of saved.keyPackages) engine.keyPackages.set(ref, held);
      for (const { state: groupState, pending, own } of saved.groups) {
        engine.groups.set(toHex(groupState.groupContext.groupId), {
          state: groupState,
          cs: await suiteImpl(groupState.groupContext.cipherSuite),
          pending,
          own,
        });
      }
      return engine;
    } catch (error) {
      if (error instanceof TsMlsEngineError) throw error;
      throw new TsMlsEngineError('INVALID_STATE', 'saved engine state does not decode', {
        cause: error,
      });
    }
  }

  async signaturePublicKey(): Promise<Uint8Array> {
    return Promise.resolve(Uint8Array.from(this.signatureKeyPair.publicKey));
  }

  async generateKeyPackages(count: number): Promise<Uint8Array[]> {
    if (!Number.isInteger(count) || count < 0) throw new TypeError('count must be a whole number');
    return this.exclusive(async () => {
      forgetExpiredKeyPackages(this.keyPackages);
      const out: Uint8Array[] = [];
      for (let i = 0; i < count; i++) out.push(await this.holdKeyPackage(false));
      return out;
    });
  }

  async generateLastResortKeyPackage(): Promise<Uint8Array> {
    return this.exclusive(async () => {
      forgetExpiredKeyPackages(this.keyPackages);
      return this.holdKeyPackage(true);
    });
  }

  async createGroup(groupId: Uint8Array): Promise<{ groupInfo: Uint8Array | null }> {
    return this.exclusive(async () => {
      const key = toHex(groupId);
      if (this.groups.get(key)?.state.groupActiveState.kind === 'active') {
        throw new TsMlsEngineError('GROUP_EXISTS', 'already in a group with this id');
      }
      // The creator's own leaf comes from a key package that is never uploaded, so not held.
      const { keyPackage, privateKeyPackage } = await newKeyPackage(this.maker(), false);
      const state = await createGroup(
        Uint8Array.from(groupId),
        keyPackage,
        privateKeyPackage,
        [],
        this.cs,
        this.settings.clientConfig,
      );
      this.groups.set(key, { state, cs: this.cs, pending: new Map(), own: new Map() });
      return { groupInfo: await this.encodeGroupInfo(state, this.cs) };
    });
  }

  async addMembers(
    groupId: Uint8Array,
    keyPackages: Uint8Array[],
    send: CommitSender,
  ): Promise<CommitOutcome> {
    const proposals: Proposal[] = keyPackages.map((bytes) => {
      const message = decodeMessage(bytes, 'key package', 'INVALID_KEY_PACKAGE');
      if (message.wireformat !== 'mls_key_package') {
        throw new TsMlsEngineError(
          'INVALID_KEY_PACKAGE',
          `expected a key package, got ${message.wireformat}`,
        );
      }
      return { proposalType: 'add', add: { keyPackage: message.keyPackage } };
    });
    if (proposals.length === 0) throw new TypeError('no key packages to add');
    return this.commit(groupId, () => proposals, send, 'INVALID_KEY_PACKAGE');
  }

  async removeMembers(
    groupId: Uint8Array,
    identities: string[],
    send: CommitSender,
  ): Promise<CommitOutcome> {
    const wanted = new Set(identities);
    return this.commit(
      groupId,
      (group) => {
        const ownLeaf = group.state.privatePath.leafIndex;
        const leaves = leafIdentities(group.state.ratchetTree).filter((leaf) =>
          wanted.has(leaf.identity),
        );
        if (leaves.some((leaf) => leaf.leafIndex === ownLeaf)) {
          throw new TsMlsEngineError('CANNOT_REMOVE_SELF', 'a commit cannot remove its committer');
        }
        if (leaves.length === 0) {
          throw new TsMlsEngineError('UNKNOWN_MEMBER', 'none of these identities is in the group');
        }
        return leaves.map(({ leafIndex }) => ({
          proposalType: 'remove',
          remove: { removed: leafIndex },
        }));
      },
      send,
      'INVALID_MESSAGE',
    );
  }

  async update(groupId: Uint8Array, send: CommitSender): Promise<CommitOutcome> {
    // A commit without proposals carries a path: fresh HPKE keys for this leaf and its ancestors.
    return this.commit(groupId, () => [], send, 'INVALID_MESSAGE');
  }

  async joinFromWelcome(welcome: Uint8Array): Promise<{ groupId: Uint8Array }> {
    const message = decodeMessage(welcome, 'Welcome');
    if (message.wireformat !== 'mls_welcome') {
      throw new TsMlsEngineError(
        'INVALID_MESSAGE',
        `expected a Welcome, got ${message.wireformat}`,
      );
    }
    return this.exclusive(async () => {
      let match: [string, HeldKeyPackage] | undefined;
      for (const secrets of message.welcome.secrets) {
        const ref = toHex(secrets.newMember);
        const held = this.keyPackages.get(ref);
        if (held !== undefined) {
          match = [ref, held];
          break;
        }
      }
      if (match === undefined) {
        throw new TsMlsEngineError(
          'NO_MATCHING_KEY_PACKAGE',
          'the Welcome names none of our key packages',
        );
      }
      const [ref, held] = match;
      const cs = await suiteImpl(held.keyPackage.cipherSuite);
      let state: ClientState;
      // Copies: the group state keeps the leaf key, and the held package's arrays are zeroed
      // when it expires (a last-resort package outlives the groups it opened).
      const privateKeys: PrivateKeyPackage = {
        initPrivateKey: Uint8Array.from(held.privateKeyPackage.initPrivateKey),
        hpkePrivateKey: Uint8Array.from(held.privateKeyPackage.hpkePrivateKey),
        signaturePrivateKey: Uint8Array.from(held.privateKeyPackage.signaturePrivateKey),
      };
      try {
        state = await joinFromWelcome(
          message.welcome,
          held.keyPackage,
          privateKeys,
          cs,
          this.settings.clientConfig,
        );
      } catch (error) {
        throw new TsMlsEngineError('INVALID_MESSAGE', 'the Welcome does not verify', {
          cause: error,
        });
      }
      const key = toHex(state.groupContext.groupId);
      // A device removed earlier may be invited back into the same group: its stale state goes.
      if (this.groups.get(key)?.state.groupActiveState.kind === 'active') {
        throw new TsMlsEngineError('GROUP_EXISTS', 'already in a group with this id');
      }
      // A used key package's init key must never open another Welcome. The last-resort one is
      // handed out repeatedly by design, so its keys stay.
      if (!held.lastResort) this.keyPackages.delete(ref);
      this.groups.set(key, { state, cs, pending: new Map(), own: new Map() });
      return { groupId: Uint8Array.from(state.groupContext.groupId) };
    });
  }

  /**
   * Joins a group by external commit (RFC 9420 §12.4.3.2) from its GroupInfo (MLSMessage, with
   * external_pub and the ratchet tree): a fresh leaf, an ExternalInit and a path, sent as a
   * PublicMessage with the new epoch's GroupInfo. The group is kept only if `send` says accepted.
   */
  async joinByExternalCommit(
    groupInfo: Uint8Array,
    send: CommitSender,
  ): Promise<{ groupId: Uint8Array; outcome: CommitOutcome }> {
    const message = decodeMessage(groupInfo, 'GroupInfo');
    if (message.wireformat !== 'mls_group_info') {
      throw new TsMlsEngineError(
        'INVALID_MESSAGE',
        `expected a GroupInfo, got ${message.wireformat}`,
      );
    }
    const groupId = Uint8Array.from(message.groupInfo.groupContext.groupId);
    const key = toHex(groupId);
    const prepared = await this.exclusive(async () => {
      if (this.groups.get(key)?.state.groupActiveState.kind === 'active') {
        throw new TsMlsEngineError('GROUP_EXISTS', 'already in a group with this id');
      }
      const cs = await suiteImpl(message.groupInfo.groupContext.cipherSuite);
      // The joiner's leaf comes from a key package that is never uploaded, so not held.
      const { keyPackage, privateKeyPackage } = await newKeyPackage(this.maker(), false);
      let joined: Awaited<ReturnType<typeof joinGroupExternal>>;
      try {
        joined = await joinGroupExternal(
          message.groupInfo,
          keyPackage,
          privateKeyPackage,
          false,
          readingRfcExternalPub(cs),
          undefined,
          this.settings.clientConfig,
        );
      } catch (error) {
        throw new TsMlsEngineError('INVALID_MESSAGE', 'the GroupInfo cannot be joined', {
          cause: error,
        });
      }
      const commit = encodeMlsMessage({
        version: 'mls10',
        wireformat: 'mls_public_message',
        publicMessage: joined.publicMessage,
      });
      const bundle: CommitBundle = {
        commit,
        groupInfo: await this.encodeGroupInfo(joined.newState, cs),
      };
      return { bundle, state: joined.newState, cs };
    });
    const verdict = await send(prepared.bundle);
    if (verdict === 'rejected') return { groupId, outcome: 'rejected' };
    return this.exclusive(() => {
      if (this.groups.get(key)?.state.groupActiveState.kind === 'active') {
        throw new TsMlsEngineError('GROUP_EXISTS', 'already in a group with this id');
      }
      const group: GroupEntry = {
        state: prepared.state,
        cs: prepared.cs,
        pending: new Map(),
        own: new Map(),
      };
      this.groups.set(key, group);
      // The log echoes the joining commit; it is ours.
      this.remember(group, digest(prepared.bundle.commit), {
        kind: 'commit',
        epoch: prepared.state.groupContext.epoch,
      });
      return Promise.resolve({ groupId, outcome: 'accepted' as const });
    });
  }

  async processMessage(groupId: Uint8Array, message: Uint8Array): Promise<ProcessedMessage> {
    return this.exclusive(async () => {
      const group = this.group(groupId);
      const key = digest(message);
      // ts-mls cannot process its own messages (its ratchets moved on when sending); the log
      // echoes them back, so they are recognised by their bytes instead.
      const own = group.own.get(key);
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
      const pending = group.pending.get(key);
      if (pending !== undefined) {
        // Our commit in the log means the delivery service took it, whatever `send` heard.
        this.adopt(group, key, pending);
        return {
          kind: 'commit',
          epoch: group.state.groupContext.epoch,
          own: true,
          removedSelf: false,
        };
      }
      return this.processForeign(group, groupId, message);
    });
  }

  async encrypt(groupId: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    return this.exclusive(async () => {
      const group = this.activeGroup(groupId);
      const data = Uint8Array.from(plaintext);
      const { newState, privateMessage, consumed } = await createApplicationMessage(
        group.state,
        data,
        group.cs,
      );
      group.state = newState;
      this.wipe(group, consumed);
      const bytes = encodeMlsMessage({
        version: 'mls10',
        wireformat: 'mls_private_message',
        privateMessage,
      });
      this.remember(group, digest(bytes), {
        kind: 'application',
        epoch: newState.groupContext.epoch,
        plaintext: data,
      });
      return bytes;
    });
  }

  async epoch(groupId: Uint8Array): Promise<bigint> {
    return this.exclusive(() => Promise.resolve(this.group(groupId).state.groupContext.epoch));
  }

  async members(groupId: Uint8Array): Promise<string[]> {
    return this.exclusive(() =>
      Promise.resolve(leafIdentities(this.group(groupId).state.ratchetTree).map((l) => l.identity)),
    );
  }

  async isMember(groupId: Uint8Array): Promise<boolean> {
    return this.exclusive(() =>
      Promise.resolve(this.groups.get(toHex(groupId))?.state.groupActiveState.kind === 'active'),
    );
  }

  async exportSecret(
    groupId: Uint8Array,
    label: string,
    context: Uint8Array,
    length: number,
  ): Promise<Uint8Array> {
    return this.exclusive(async () => {
      const group = this.activeGroup(groupId);
      return mlsExporter(group.state.keySchedule.exporterSecret, label, context, length, group.cs);
    });
  }

  async saveState(): Promise<Uint8Array> {
    return this.exclusive(() =>
      Promise.resolve(
        encodeEngineState({
          identity: this.identity,
          ciphersuite: this.ciphersuite,
          signatureKeyPair: this.signatureKeyPair,
          keyPackages: this.keyPackages,
          groups: [...this.groups.values()],
        }),
      ),
    );
  }

  /** How many key packages this engine holds private keys for (consumed ones are forgotten). */
  heldKeyPackageCount(): number {
    return this.keyPackages.size;
  }

  // ---------------------------------------------------------------------------------------------

  private exclusive<T>(operation: () => Promise<T>): Promise<T> {
    return this.queue.run(operation);
  }

  private group(groupId: Uint8Array): GroupEntry {
    const group = this.groups.get(toHex(groupId));
    if (group === undefined) throw new TsMlsEngineError('UNKNOWN_GROUP', 'not in this group');
    return group;
  }

  private activeGroup(groupId: Uint8Array): GroupEntry {
    const group = this.group(groupId);
    if (group.state.groupActiveState.kind !== 'active') {
      throw new TsMlsEngineError('NOT_A_MEMBER', 'this device was removed from the group');
    }
    return group;
  }

  private async commit(
    groupId: Uint8Array,
    proposalsFor: (group: GroupEntry) => Proposal[],
    send: CommitSender,
    invalidCode: TsMlsEngineErrorCode,
  ): Promise<CommitOutcome> {
    // The lock is not held while `send` runs: the caller may process the log meanwhile (even
    // our own commit's echo), and must never deadlock against its own engine.
    const prepared = await this.exclusive(async () => {
      const group = this.activeGroup(groupId);
      const proposals = proposalsFor(group);
      const baseEpoch = group.state.groupContext.epoch;
      let result: Awaited<ReturnType<typeof createCommit>>;
      try {
        result = await createCommit(
          { state: group.state, cipherSuite: group.cs },
          // The delivery service orders commits by reading their framing, hence PublicMessage;
          // joiners get the tree inside the Welcome's GroupInfo, hence ratchetTreeExtension.
          { extraProposals: proposals, wireAsPublicMessage: true, ratchetTreeExtension: true },
        );
      } catch (error) {
        throw new TsMlsEngineError(invalidCode, 'ts-mls refused to make the commit', {
          cause: error,
        });
      }
      const commit = encodeMlsMessage(result.commit);
      const key = digest(commit);
      // Kept aside, not adopted: only the delivery service's verdict (or the log) says whether
      // this commit or a competitor's made epoch E+1.
      group.pending.set(key, result.newState);
      while (group.pending.size > PENDING_COMMIT_LIMIT) {
        const oldest = group.pending.keys().next().value;
        if (oldest === undefined) break;
        group.pending.delete(oldest);
      }
      const bundle: CommitBundle = {
        commit,
        // The server keeps this GroupInfo for external joins: external_pub and the tree.
        groupInfo: await this.encodeGroupInfo(result.newState, group.cs),
      };
      if (result.welcome !== undefined) {
        bundle.welcome = encodeMlsMessage({
          version: 'mls10',
          wireformat: 'mls_welcome',
          welcome: result.welcome,
        });
      }
      return { group, key, baseEpoch, bundle };
    });
    // If `send` throws, the verdict is unknown: the pending state stays until the log shows
    // either this commit (adopted then) or a competitor's (dropped then).
    const verdict = await send(prepared.bundle);
    return this.exclusive(() => {
      const { group, key, baseEpoch } = prepared;
      if (verdict === 'rejected') {
        group.pending.delete(key);
        return Promise.resolve<CommitOutcome>('rejected');
      }
      if (group.own.get(key)?.kind === 'commit') return Promise.resolve<CommitOutcome>('accepted');
      const state = group.pending.get(key);
      if (
        state === undefined ||
        this.groups.get(toHex(groupId)) !== group ||
        group.state.groupContext.epoch !== baseEpoch
      ) {
        throw new TsMlsEngineError(
          'COMMIT_CONFLICT',
          `the commit for epoch ${baseEpoch} was accepted, but this engine already processed another`,
        );
      }
      this.adopt(group, key, state);
      return Promise.resolve<CommitOutcome>('accepted');
    });
  }

  /** Moves a group to the state of its own accepted commit. */
  private adopt(group: GroupEntry, key: string, next: ClientState): void {
    const previous = group.state;
    // Messages decrypted or sent in the old epoch while the commit was in flight advanced the
    // old epoch's secret tree; the new state's copy of that epoch predates them. Keep the
    // progress, so a consumed key cannot decrypt a replay.
    const history = new Map(next.historicalReceiverData);
    const oldEpoch = history.get(previous.groupContext.epoch);
    if (oldEpoch !== undefined) {
      history.set(previous.groupContext.epoch, { ...oldEpoch, secretTree: previous.secretTree });
    }
    group.state = { ...next, historicalReceiverData: history };
    group.pending.clear();
    this.remember(group, key, { kind: 'commit', epoch: group.state.groupContext.epoch });
    this.forgetOldOwnMessages(group);
  }

  private async processForeign(
    group: GroupEntry,
    groupId: Uint8Array,
    bytes: Uint8Array,
  ): Promise<ProcessedMessage> {
    const message = decodeMessage(bytes, 'group message');
    if (
      message.wireformat !== 'mls_public_message' &&
      message.wireformat !== 'mls_private_message'
    ) {
      throw new TsMlsEngineError('INVALID_MESSAGE', `${message.wireformat} is not a group message`);
    }
    const framing =
      message.wireformat === 'mls_public_message'
        ? {
            groupId: message.publicMessage.content.groupId,
            epoch: message.publicMessage.content.epoch,
            contentType: message.publicMessage.content.contentType,
          }
        : {
            groupId: message.privateMessage.groupId,
            epoch: message.privateMessage.epoch,
            contentType: message.privateMessage.contentType,
          };
    if (!bytesEqual(framing.groupId, groupId)) {
      throw new TsMlsEngineError('WRONG_GROUP', 'the message belongs to another group');
    }
    const state = group.state;
    const current = state.groupContext.epoch;
    if (framing.epoch > current) {
      if (state.groupActiveState.kind !== 'active') {
        throw new TsMlsEngineError('NOT_A_MEMBER', 'this device was removed from the group');
      }
      throw new TsMlsEngineError(
        'FUTURE_EPOCH',
        `message for epoch ${framing.epoch}, at ${current}`,
      );
    }
    if (framing.epoch < current) {
      // Only application messages of past epochs can still be read, while ts-mls keeps their keys.
      if (
        framing.contentType !== 'application' ||
        !state.historicalReceiverData.has(framing.epoch)
      ) {
        throw new TsMlsEngineError(
          'EPOCH_TOO_OLD',
          `message for epoch ${framing.epoch}, at ${current}`,
        );
      }
    }
    let result: Awaited<ReturnType<typeof processMessage>>;
    try {
      result = await processMessage(message, state, emptyPskIndex, acceptAll, group.cs);
    } catch (error) {
      throw new TsMlsEngineError('INVALID_MESSAGE', 'the message does not decrypt or verify', {
        cause: error,
      });
    }
    if (result.kind === 'applicationMessage') {
      const senderIdentity =
        message.wireformat === 'mls_private_message'
          ? await this.senderIdentity(state, message.privateMessage, group.cs)
          : null;
      group.state = result.newState;
      this.wipe(group, result.consumed);
      return { kind: 'application', plaintext: result.message, senderIdentity, own: false };
    }
    if (framing.contentType !== 'commit') {
      group.state = result.newState;
      return { kind: 'proposal' };
    }
    // Another member's commit took the epoch our pending commits were made for: they can
    // never apply now.
    group.pending.clear();
    group.state = result.newState;
    this.wipe(group, result.consumed);
    const removedSelf = result.newState.groupActiveState.kind === 'removedFromGroup';
    // ts-mls leaves a removed member's state at the old epoch; the group itself moved on.
    const epoch = framing.epoch + 1n;
    if (removedSelf) group.own.clear();
    else this.forgetOldOwnMessages(group);
    return { kind: 'commit', epoch, own: false, removedSelf };
  }

  /**
   * The sender of a PrivateMessage that ts-mls has just decrypted and verified. ts-mls does not
   * return it, so the sender data (leaf index) is decrypted again with the same epoch's key; the
   * content signature ts-mls checked was by that leaf's key, so the identity is authenticated.
   */
  private async senderIdentity(
    state: ClientState,
    message: PrivateMessage,
    cs: CiphersuiteImpl,
  ): Promise<string | null> {
    const epochData =
      message.epoch === state.groupContext.epoch
        ? { secret: state.keySchedule.senderDataSecret, tree: state.ratchetTree }
        : (() => {
            const past = state.historicalReceiverData.get(message.epoch);
            return past === undefined
              ? undefined
              : { secret: past.senderDataSecret, tree: past.ratchetTree };
          })();
    if (epochData === undefined) return null;
    const senderData = await decryptSenderData(message, epochData.secret, cs);
    if (senderData === undefined) return null;
    const leaf = epochData.tree[2 * senderData.leafIndex];
    return leaf?.nodeType === 'leaf' ? (basicIdentity(leaf.leaf.credential) ?? null) : null;
  }

  /**
   * Zeroes secrets ts-mls reports as consumed, unless a pending commit's state (made from the
   * same state, sharing its arrays) may still need them.
   */
  private wipe(group: GroupEntry, consumed: Uint8Array[]): void {
    if (group.pending.size > 0) return;
    for (const secret of consumed) secret.fill(0);
  }

  private remember(group: GroupEntry, key: string, message: OwnMessage): void {
    setBounded(group.own, key, message, OWN_MESSAGE_LIMIT);
  }

  /** Echoes of epochs whose keys the others no longer keep cannot come any more. */
  private forgetOldOwnMessages(group: GroupEntry): void {
    const keep = BigInt(this.settings.clientConfig.keyRetentionConfig.retainKeysForEpochs);
    const oldest = group.state.groupContext.epoch - keep;
    for (const [key, message] of group.own) {
      if (message.epoch < oldest) group.own.delete(key);
    }
  }

  private async encodeGroupInfo(state: ClientState, cs: CiphersuiteImpl): Promise<Uint8Array> {
    const groupInfo = await groupInfoForExternalJoins(state, cs);
    return encodeMlsMessage({ version: 'mls10', wireformat: 'mls_group_info', groupInfo });
  }

  /** Who makes this engine's key packages. */
  private maker(): KeyPackageMaker {
    return {
      identity: this.identity,
      suite: this.suite,
      cs: this.cs,
      signatureKeyPair: this.signatureKeyPair,
      lifetime: this.settings.lifetime,
    };
  }

  private async holdKeyPackage(lastResort: boolean): Promise<Uint8Array> {
    const { key, held, message } = await keyPackageToHold(this.maker(), lastResort);
    this.keyPackages.set(key, held);
    return message;
  }
}

/** Makes ts-mls engines with the given retention and key-package lifetime. */
export function createTsMlsEngineFactory(options: TsMlsEngineOptions = {}): MlsEngineFactory {
  const settings: Settings = {
    clientConfig: {
      keyRetentionConfig: { ...defaultKeyRetentionConfig, ...options.keyRetention },
      lifetimeConfig: defaultLifetimeConfig,
      keyPackageEqualityConfig: defaultKeyPackageEqualityConfig,
      paddingConfig: defaultPaddingConfig,
      // Credentials are bound to devices by the delivery service, which checks each key
      // package's identity and signature key against the uploading device.
      authService: defaultAuthenticationService,
    },
    lifetime: options.keyPackageLifetime ?? DEFAULT_KEY_PACKAGE_LIFETIME,
  };
  return {
    create: (identity, createOptions) =>
      TsMlsEngine.create(identity, createOptions?.ciphersuite ?? DEFAULT_CIPHERSUITE, settings),
    restore: (state) => TsMlsEngine.restore(state, settings),
  };
}

/** The ts-mls engine factory with default settings (ciphersuite 1, ts-mls's key retention). */
export const tsMlsEngineFactory: MlsEngineFactory = createTsMlsEngineFactory();
