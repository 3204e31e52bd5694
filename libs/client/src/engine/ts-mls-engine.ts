/**
 * The ts-mls engine (MIT, pure TypeScript): {@link MlsEngine} over ts-mls 1.6.4.
 *
 * What ts-mls does by default and Parley cannot use is overridden here: key packages get a real
 * lifetime (ts-mls's default runs to 2^63) and fixed capabilities (its defaults add random
 * GREASE values) that declare last_resort; commits go out as PublicMessage with the ratchet tree
 * in the Welcome's GroupInfo; a commit's new state is kept aside until the delivery service
 * accepts it. ts-mls cannot decrypt its own messages, so the engine remembers what it sent and
 * recognises the conversation log's echo of it.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import {
  acceptAll,
  ciphersuites,
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeGroupState,
  decodeMlsMessage,
  defaultAuthenticationService,
  defaultKeyPackageEqualityConfig,
  defaultKeyRetentionConfig,
  defaultLifetimeConfig,
  defaultPaddingConfig,
  emptyPskIndex,
  encodeGroupState,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  mlsExporter,
  processMessage,
  type Capabilities,
  type CiphersuiteImpl,
  type CiphersuiteName,
  type ClientConfig,
  type ClientState,
  type Credential,
  type Extension,
  type KeyPackage,
  type KeyRetentionConfig,
  type MLSMessage,
  type PrivateKeyPackage,
  type PrivateMessage,
  type Proposal,
  type RatchetTree,
} from 'ts-mls';
// Not re-exported from the package root; reachable through its "./*.js" export map.
import { decodeKeyPackage, encodeKeyPackage, makeKeyPackageRef } from 'ts-mls/keyPackage.js';
import { decryptSenderData } from 'ts-mls/privateMessage.js';
import type {
  CommitBundle,
  CommitOutcome,
  CommitSender,
  MlsEngine,
  MlsEngineErrorCode,
  MlsEngineFactory,
  ProcessedMessage,
} from './mls-engine.js';
import { joinFromWelcome } from './ts-mls-join.js';

/** Extension type of `last_resort` (draft-ietf-mls-extensions; IANA MLS Extension Types 0x000A). */
export const LAST_RESORT_EXTENSION_TYPE = 0x000a;

/** The ciphersuite of every key package and group unless the factory is told otherwise. */
export const DEFAULT_CIPHERSUITE = 1;

/**
 * Credential types every leaf of this engine declares it supports. Parley's own credentials are
 * basic only, but a group created by core-crypto (OpenMLS) carries a required_capabilities
 * extension listing basic and x509, and OpenMLS refuses to add a key package whose leaf does not
 * declare both ("Credentials are not acceptable", RFC 9420 §11.1). ts-mls decodes x509
 * credentials and checks their leaves' signatures like any other; no x509 member can arrive
 * through Parley anyway, since the delivery service accepts basic-credential key packages only.
 */
export const SUPPORTED_CREDENTIAL_TYPES = Object.freeze(['basic', 'x509'] as const);

/** Default key-package lifetime: from one hour ago (clock skew) to 30 days ahead. */
export const DEFAULT_KEY_PACKAGE_LIFETIME = Object.freeze({
  beforeSeconds: 60 * 60,
  afterSeconds: 30 * 24 * 60 * 60,
});

/**
 * How long the private keys of an unused key package are kept after it expires: a Welcome for
 * a package claimed just before expiry may still be on its way to an offline device.
 */
const EXPIRED_KEY_PACKAGE_GRACE_SECONDS = 14n * 24n * 60n * 60n;

/** Own messages remembered per group at most (the oldest are forgotten first). */
const OWN_MESSAGE_LIMIT = 1000;

/** Commits per group that may await the delivery service's verdict at once. */
const PENDING_COMMIT_LIMIT = 8;

/** Why a {@link TsMlsEngine} operation failed. */
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

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

function toHex(bytes: Uint8Array): string {
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

/** Own messages and pending commits are recognised by a digest of their exact bytes. */
function digest(bytes: Uint8Array): string {
  return toHex(sha256(bytes));
}

function nowSeconds(): bigint {
  return BigInt(Math.floor(Date.now() / 1000));
}

// ts-mls builds a CiphersuiteImpl asynchronously (it may import optional peers); build each once.
const suiteImpls = new Map<CiphersuiteName, Promise<CiphersuiteImpl>>();
function suiteImpl(name: CiphersuiteName): Promise<CiphersuiteImpl> {
  let impl = suiteImpls.get(name);
  if (impl === undefined) {
    impl = getCiphersuiteImpl(getCiphersuiteFromName(name));
    suiteImpls.set(name, impl);
    // A failed build (a missing peer) must not be cached for good.
    impl.catch(() => suiteImpls.delete(name));
  }
  return impl;
}

/** RFC 9420 suites 1–7; the post-quantum ones need peers Parley does not install. */
function suiteName(id: number): CiphersuiteName {
  const entry = Object.entries(ciphersuites).find(([, value]) => value === id);
  if (entry === undefined || id < 1 || id > 7) {
    throw new TsMlsEngineError('UNSUPPORTED_CIPHERSUITE', `ciphersuite ${id} is not supported`);
  }
  return entry[0] as CiphersuiteName;
}

function basicIdentity(credential: Credential): string | undefined {
  if (credential.credentialType !== 'basic') return undefined;
  try {
    return utf8Decoder.decode(credential.identity);
  } catch {
    return undefined;
  }
}

function leafIdentities(tree: RatchetTree): { leafIndex: number; identity: string }[] {
  const out: { leafIndex: number; identity: string }[] = [];
  // Leaves sit at even node indices of the array-encoded tree (RFC 9420 §4.1).
  for (let node = 0; node < tree.length; node += 2) {
    const entry = tree[node];
    if (entry?.nodeType !== 'leaf') continue;
    const identity = basicIdentity(entry.leaf.credential);
    if (identity !== undefined) out.push({ leafIndex: node / 2, identity });
  }
  return out;
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

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

/** What the engine sent, so that the log's echo of it needs no decryption. */
type OwnMessage =
  { kind: 'commit'; epoch: bigint } | { kind: 'application'; epoch: bigint; plaintext: Uint8Array };

interface GroupEntry {
  /** The confirmed state: only a commit the delivery service took (or the log showed) moves it. */
  state: ClientState;
  cs: CiphersuiteImpl;
  /** States of own commits made from `state`, awaiting their verdict, by digest of the commit. */
  pending: Map<string, ClientState>;
  /** Own messages by digest, oldest first. */
  own: Map<string, OwnMessage>;
}

interface HeldKeyPackage {
  ref: Uint8Array;
  keyPackage: KeyPackage;
  privateKeyPackage: PrivateKeyPackage;
  lastResort: boolean;
}

interface SignatureKeyPair {
  signKey: Uint8Array;
  publicKey: Uint8Array;
}

/** The ts-mls implementation of {@link MlsEngine}; made by {@link tsMlsEngineFactory}. */
export class TsMlsEngine implements MlsEngine {
  /** Which implementation this is. */
  readonly name = 'ts-mls';

  private readonly groups = new Map<string, GroupEntry>();
  /** Private halves of the key packages handed out, by hex KeyPackageRef. */
  private readonly keyPackages = new Map<string, HeldKeyPackage>();
  private tail: Promise<unknown> = Promise.resolve();

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
      return await TsMlsEngine.decode(state, settings);
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
      this.forgetExpiredKeyPackages();
      const out: Uint8Array[] = [];
      for (let i = 0; i < count; i++) out.push(await this.holdKeyPackage(false));
      return out;
    });
  }

  async generateLastResortKeyPackage(): Promise<Uint8Array> {
    return this.exclusive(async () => {
      this.forgetExpiredKeyPackages();
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
      const { keyPackage, privateKeyPackage } = await this.newKeyPackage(false);
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
    return this.exclusive(() => Promise.resolve(this.encode()));
  }

  /** How many key packages this engine holds private keys for (consumed ones are forgotten). */
  heldKeyPackageCount(): number {
    return this.keyPackages.size;
  }

  // ---------------------------------------------------------------------------------------------

  /** Runs operations one at a time: each reads the state, awaits crypto, then writes it back. */
  private exclusive<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.tail.then(operation, operation);
    this.tail = run.catch(() => undefined);
    return run;
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
    group.own.set(key, message);
    while (group.own.size > OWN_MESSAGE_LIMIT) {
      const oldest = group.own.keys().next().value;
      if (oldest === undefined) break;
      group.own.delete(oldest);
    }
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
    const groupInfo = await createGroupInfoWithExternalPubAndRatchetTree(state, [], cs);
    return encodeMlsMessage({ version: 'mls10', wireformat: 'mls_group_info', groupInfo });
  }

  private async newKeyPackage(
    lastResort: boolean,
  ): Promise<{ keyPackage: KeyPackage; privateKeyPackage: PrivateKeyPackage }> {
    const now = nowSeconds();
    // ts-mls's defaultLifetime is 0..2^63−1, which the delivery service rejects as absurd.
    const lifetime = {
      notBefore: now - BigInt(this.settings.lifetime.beforeSeconds),
      notAfter: now + BigInt(this.settings.lifetime.afterSeconds),
    };
    // ts-mls's defaultCapabilities() appends random GREASE values; fixed ones keep the encoding
    // deterministic. last_resort is a non-default extension, so the leaf declares it (RFC 9420
    // §7.2: a leaf lists the non-default extensions it supports; OpenMLS checks this).
    // The same capabilities become the leaf of a group this engine creates, and every leaf of
    // its commits' UpdatePaths (ts-mls copies them from the old leaf).
    const capabilities: Capabilities = {
      versions: ['mls10'],
      ciphersuites: [this.suite],
      extensions: [LAST_RESORT_EXTENSION_TYPE],
      proposals: [],
      credentials: [...SUPPORTED_CREDENTIAL_TYPES],
    };
    // last_resort sits in KeyPackage.extensions (not the leaf node's), with empty data.
    const extensions: Extension[] = lastResort
      ? [{ extensionType: LAST_RESORT_EXTENSION_TYPE, extensionData: new Uint8Array() }]
      : [];
    const { publicPackage, privatePackage } = await generateKeyPackageWithKey(
      { credentialType: 'basic', identity: utf8.encode(this.identity) },
      capabilities,
      lifetime,
      extensions,
      this.signatureKeyPair,
      this.cs,
    );
    return { keyPackage: publicPackage, privateKeyPackage: privatePackage };
  }

  private async holdKeyPackage(lastResort: boolean): Promise<Uint8Array> {
    const { keyPackage, privateKeyPackage } = await this.newKeyPackage(lastResort);
    const ref = await makeKeyPackageRef(keyPackage, this.cs.hash);
    this.keyPackages.set(toHex(ref), { ref, keyPackage, privateKeyPackage, lastResort });
    return encodeMlsMessage({ version: 'mls10', wireformat: 'mls_key_package', keyPackage });
  }

  private forgetExpiredKeyPackages(): void {
    const cutoff = nowSeconds() - EXPIRED_KEY_PACKAGE_GRACE_SECONDS;
    for (const [ref, held] of this.keyPackages) {
      if (held.keyPackage.leafNode.lifetime.notAfter < cutoff) {
        held.privateKeyPackage.initPrivateKey.fill(0);
        held.privateKeyPackage.hpkePrivateKey.fill(0);
        this.keyPackages.delete(ref);
      }
    }
  }

  // --- saved state ------------------------------------------------------------------------------
  //
  // "PTMS" u8(version 1), then: identity, u16 ciphersuite, signature public and private key;
  // u32 key packages × (ref, KeyPackage, init private key, HPKE private key, u8 last resort);
  // u32 groups × (GroupState, u32 pending × (digest, GroupState), u32 own × (digest, u8 kind,
  // u64 epoch, plaintext)). Byte strings are u32-length-prefixed; integers are big-endian.

  private encode(): Uint8Array {
    const out = new ByteWriter();
    out.raw(STATE_MAGIC);
    out.u8(STATE_VERSION);
    out.bytes(utf8.encode(this.identity));
    out.u16(this.ciphersuite);
    out.bytes(this.signatureKeyPair.publicKey);
    out.bytes(this.signatureKeyPair.signKey);
    out.u32(this.keyPackages.size);
    for (const held of this.keyPackages.values()) {
      out.bytes(held.ref);
      out.bytes(encodeKeyPackage(held.keyPackage));
      out.bytes(held.privateKeyPackage.initPrivateKey);
      out.bytes(held.privateKeyPackage.hpkePrivateKey);
      out.u8(held.lastResort ? 1 : 0);
    }
    out.u32(this.groups.size);
    for (const group of this.groups.values()) {
      out.bytes(encodeGroupState(group.state));
      out.u32(group.pending.size);
      for (const [key, state] of group.pending) {
        out.bytes(hexToBytes(key));
        out.bytes(encodeGroupState(state));
      }
      out.u32(group.own.size);
      for (const [key, message] of group.own) {
        out.bytes(hexToBytes(key));
        out.u8(message.kind === 'commit' ? 0 : 1);
        out.u64(message.epoch);
        out.bytes(message.kind === 'application' ? message.plaintext : new Uint8Array());
      }
    }
    return out.finish();
  }

  private static async decode(bytes: Uint8Array, settings: Settings): Promise<TsMlsEngine> {
    const input = new ByteReader(bytes);
    if (!bytesEqual(input.raw(STATE_MAGIC.length), STATE_MAGIC)) {
      throw new TsMlsEngineError('INVALID_STATE', 'not saved ts-mls engine state');
    }
    const version = input.u8();
    if (version !== STATE_VERSION) {
      throw new TsMlsEngineError(
        'INVALID_STATE',
        `saved state version ${version} is not supported`,
      );
    }
    const identity = utf8Decoder.decode(input.bytes());
    const ciphersuite = input.u16();
    const suite = suiteName(ciphersuite);
    const cs = await suiteImpl(suite);
    const publicKey = input.bytes();
    const signKey = input.bytes();
    const engine = new TsMlsEngine(
      identity,
      ciphersuite,
      suite,
      cs,
      { publicKey, signKey },
      settings,
    );
    const decodeState = (encoded: Uint8Array): ClientState => {
      const decoded = decodeGroupState(encoded, 0);
      if (decoded?.[1] !== encoded.length) {
        throw new TsMlsEngineError('INVALID_STATE', 'a saved group state does not decode');
      }
      // The client config is behaviour, not state: the restoring factory's applies.
      return { ...decoded[0], clientConfig: settings.clientConfig };
    };
    for (let i = input.u32(); i > 0; i--) {
      const ref = input.bytes();
      const encoded = input.bytes();
      const keyPackage = decodeKeyPackage(encoded, 0);
      if (keyPackage?.[1] !== encoded.length) {
        throw new TsMlsEngineError('INVALID_STATE', 'a saved key package does not decode');
      }
      const initPrivateKey = input.bytes();
      const hpkePrivateKey = input.bytes();
      const lastResort = input.u8() === 1;
      engine.keyPackages.set(toHex(ref), {
        ref,
        keyPackage: keyPackage[0],
        privateKeyPackage: { initPrivateKey, hpkePrivateKey, signaturePrivateKey: signKey },
        lastResort,
      });
    }
    for (let i = input.u32(); i > 0; i--) {
      const state = decodeState(input.bytes());
      const group: GroupEntry = {
        state,
        cs: await suiteImpl(state.groupContext.cipherSuite),
        pending: new Map(),
        own: new Map(),
      };
      for (let j = input.u32(); j > 0; j--) {
        const key = toHex(input.bytes());
        group.pending.set(key, decodeState(input.bytes()));
      }
      for (let j = input.u32(); j > 0; j--) {
        const key = toHex(input.bytes());
        const kind = input.u8();
        const epoch = input.u64();
        const plaintext = input.bytes();
        group.own.set(
          key,
          kind === 0 ? { kind: 'commit', epoch } : { kind: 'application', epoch, plaintext },
        );
      }
      engine.groups.set(toHex(state.groupContext.groupId), group);
    }
    input.end();
    return engine;
  }
}

const STATE_MAGIC = new Uint8Array([0x50, 0x54, 0x4d, 0x53]); // "PTMS"
const STATE_VERSION = 1;

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

class ByteWriter {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;

  raw(bytes: Uint8Array): void {
    this.chunks.push(Uint8Array.from(bytes));
    this.size += bytes.length;
  }

  u8(value: number): void {
    this.raw(Uint8Array.of(value));
  }

  u16(value: number): void {
    const out = new Uint8Array(2);
    new DataView(out.buffer).setUint16(0, value);
    this.raw(out);
  }

  u32(value: number): void {
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, value);
    this.raw(out);
  }

  u64(value: bigint): void {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, value);
    this.raw(out);
  }

  bytes(value: Uint8Array): void {
    this.u32(value.length);
    this.raw(value);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }
}

class ByteReader {
  private offset = 0;
  private readonly view: DataView;

  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  private need(length: number): number {
    if (this.offset + length > this.data.length) {
      throw new TsMlsEngineError('INVALID_STATE', 'saved state is truncated');
    }
    const at = this.offset;
    this.offset += length;
    return at;
  }

  raw(length: number): Uint8Array {
    const at = this.need(length);
    return this.data.slice(at, at + length);
  }

  u8(): number {
    return this.view.getUint8(this.need(1));
  }

  u16(): number {
    return this.view.getUint16(this.need(2));
  }

  u32(): number {
    return this.view.getUint32(this.need(4));
  }

  u64(): bigint {
    return this.view.getBigUint64(this.need(8));
  }

  bytes(): Uint8Array {
    return this.raw(this.u32());
  }

  end(): void {
    if (this.offset !== this.data.length) {
      throw new TsMlsEngineError('INVALID_STATE', 'trailing bytes after saved state');
    }
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
