/**
 * A test-side MLS client over ts-mls. End-to-end suites and benchmarks use it to play real devices
 * against the server, so it deliberately imports nothing from apps/server or libs/mls: if both
 * sides shared code, a wire-format bug could cancel itself out. It takes only the agreed
 * constants of @parley/protocol (the last_resort extension type, hex).
 */
import {
  acceptAll,
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeMlsMessage,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processMessage,
  type Capabilities,
  type CiphersuiteImpl,
  type CiphersuiteName,
  type ClientState,
  type Credential,
  type Extension,
  type KeyPackage,
  type Lifetime,
  type MLSMessage,
  type PrivateKeyPackage,
  type Proposal,
} from 'ts-mls';
import { LAST_RESORT_EXTENSION_TYPE, toHex } from '@parley/protocol';
// Not re-exported from the package root; reachable through the package's "./*.js" export map.
import { signFramedContentTBS, toTbs } from 'ts-mls/framedContent.js';
import { signGroupInfo } from 'ts-mls/groupInfo.js';
import { makeKeyPackageRef, signKeyPackage } from 'ts-mls/keyPackage.js';
import { decodeRatchetTree, encodeRatchetTree, type RatchetTree } from 'ts-mls/ratchetTree.js';
import { treeHashRoot } from 'ts-mls/treeHash.js';

/** Ciphersuite 1, the one every Parley device uses unless a test asks otherwise. */
export const DEFAULT_CIPHERSUITE: CiphersuiteName = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519';

/** Default key-package validity: from one hour ago (tolerates clock skew) to 30 days ahead. */
export const DEFAULT_LIFETIME_MS = { before: 60 * 60 * 1000, after: 30 * 24 * 60 * 60 * 1000 };

/** A signature key pair as ts-mls holds it (`signKey` is PKCS#8 for Ed25519 under WebCrypto). */
export interface SignatureKeyPair {
  signKey: Uint8Array;
  publicKey: Uint8Array;
}

/** Knobs for one key package; each one breaks or bends exactly one property the server checks. */
export interface KeyPackageOptions {
  /** Start of the lifetime; default now − 1 h. */
  notBefore?: Date;
  /** End of the lifetime; default now + 30 days. A past date makes a validly signed expired package. */
  notAfter?: Date;
  /** Credential identity to put in the leaf instead of the member's own (impersonation tests). */
  identity?: string;
  /** Sign with this key pair instead of the member's own (wrong-signature-key tests). */
  signatureKeyPair?: SignatureKeyPair;
  /** Flip a bit in the leaf-node signature, then re-sign the KeyPackage so only the leaf check fails. */
  breakLeafNodeSignature?: boolean;
}

/** Options of {@link MlsMember.create}. */
export interface MlsMemberOptions {
  /** Ciphersuite of every key package and group of this member; default {@link DEFAULT_CIPHERSUITE}. */
  ciphersuite?: CiphersuiteName;
}

/** What a commit produces, every part as encoded MLSMessage bytes ready to upload. */
export interface CommitBundle {
  /** The commit as a PublicMessage, so the server can read epoch, sender and proposals. */
  commit: Uint8Array;
  /** Welcome for the added members; absent when nobody was added. */
  welcome: Uint8Array | undefined;
  /** GroupInfo of the new epoch, with the ratchet_tree and external_pub extensions. */
  groupInfo: Uint8Array;
  /** Epoch the commit was made in (the server's epoch it must match). */
  epoch: bigint;
}

/** Outcome of {@link MlsGroup.processMessage}. */
export type ProcessedMessage =
  | { kind: 'commit'; epoch: bigint; own: boolean }
  | { kind: 'proposal' }
  | { kind: 'application'; plaintext: Uint8Array; own: boolean };

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

// ts-mls builds a CiphersuiteImpl asynchronously (it may import optional peers); build each once.
const suiteImpls = new Map<CiphersuiteName, Promise<CiphersuiteImpl>>();
function suiteImpl(name: CiphersuiteName): Promise<CiphersuiteImpl> {
  let impl = suiteImpls.get(name);
  if (impl === undefined) {
    impl = getCiphersuiteImpl(getCiphersuiteFromName(name));
    suiteImpls.set(name, impl);
  }
  return impl;
}

function decodeMessage(bytes: Uint8Array): MLSMessage {
  const decoded = decodeMlsMessage(bytes, 0);
  if (decoded === undefined) throw new Error('not a decodable MLSMessage');
  if (decoded[1] !== bytes.length) throw new Error('trailing bytes after the MLSMessage');
  return decoded[0];
}

/** Decodes MLSMessage bytes that must hold a KeyPackage. */
export function decodeKeyPackageMessage(bytes: Uint8Array): KeyPackage {
  const message = decodeMessage(bytes);
  if (message.wireformat !== 'mls_key_package') {
    throw new Error(`expected mls_key_package, got ${message.wireformat}`);
  }
  return message.keyPackage;
}

/** The KeyPackageRef (RFC 9420 §5.2) of an encoded key package, the handle Welcomes are routed by. */
export async function keyPackageRef(keyPackageMessage: Uint8Array): Promise<Uint8Array> {
  const keyPackage = decodeKeyPackageMessage(keyPackageMessage);
  return makeKeyPackageRef(keyPackage, (await suiteImpl(keyPackage.cipherSuite)).hash);
}

/** Flips one bit of the KeyPackage signature (the final bytes of the encoding), touching nothing else. */
export function tamperSignature(keyPackageMessage: Uint8Array): Uint8Array {
  // The KeyPackage is the last field of the MLSMessage and its signature the last field of the
  // KeyPackage, so the final byte is signature content (never its length prefix).
  const tampered = Uint8Array.from(keyPackageMessage);
  const last = tampered.length - 1;
  if (last < 0) throw new Error('empty key package');
  tampered[last] = (tampered[last] ?? 0) ^ 0x01;
  return tampered;
}

function encodeMessage(message: MLSMessage): Uint8Array {
  return encodeMlsMessage(message);
}

function decodePublicCommit(bytes: Uint8Array) {
  const message = decodeMessage(bytes);
  if (
    message.wireformat !== 'mls_public_message' ||
    message.publicMessage.auth.contentType !== 'commit'
  ) {
    throw new Error('expected a PublicMessage commit');
  }
  return { message, publicMessage: message.publicMessage, auth: message.publicMessage.auth };
}

function flipFirstByte(bytes: Uint8Array): Uint8Array {
  const flipped = Uint8Array.from(bytes);
  flipped[0] = (flipped[0] ?? 0) ^ 0x01;
  return flipped;
}

/** Forgery: the commit with one bit of its FramedContent signature flipped, nothing else touched. */
export function flipCommitSignature(commit: Uint8Array): Uint8Array {
  const { message, publicMessage, auth } = decodePublicCommit(commit);
  return encodeMessage({
    ...message,
    publicMessage: {
      ...publicMessage,
      auth: { ...auth, signature: flipFirstByte(auth.signature) },
    },
  });
}

/** Forgery: the commit with one bit of its confirmation tag flipped (the signature does not cover it). */
export function flipConfirmationTag(commit: Uint8Array): Uint8Array {
  const { message, publicMessage, auth } = decodePublicCommit(commit);
  return encodeMessage({
    ...message,
    publicMessage: {
      ...publicMessage,
      auth: { ...auth, confirmationTag: flipFirstByte(auth.confirmationTag) },
    },
  });
}

function toSeconds(date: Date): bigint {
  return BigInt(Math.floor(date.getTime() / 1000));
}

function credentialIdentity(credential: Credential): string | undefined {
  return credential.credentialType === 'basic'
    ? utf8Decoder.decode(credential.identity)
    : undefined;
}

interface StoredKeyPackage {
  keyPackage: KeyPackage;
  privateKeyPackage: PrivateKeyPackage;
  lastResort: boolean;
}

/** A test device running MLS with ts-mls: makes key packages and takes part in groups. */
export class MlsMember {
  /** Private halves of every key package this member made, by hex KeyPackageRef, for joining. */
  private readonly keyStore = new Map<string, StoredKeyPackage>();
  private readonly groups = new Map<string, MlsGroup>();

  private constructor(
    /** The basic-credential identity, `<userUUID>:<deviceIdHex>@<domain>`. */
    readonly identity: string,
    /** Ciphersuite of every key package and group of this member. */
    readonly ciphersuite: CiphersuiteName,
    private readonly signatureKeyPair: SignatureKeyPair,
    private readonly cs: CiphersuiteImpl,
  ) {}

  /** A new device with one fresh signature key pair for all its key packages. */
  static async create(identity: string, opts: MlsMemberOptions = {}): Promise<MlsMember> {
    const ciphersuite = opts.ciphersuite ?? DEFAULT_CIPHERSUITE;
    const cs = await suiteImpl(ciphersuite);
    const keyPair = await cs.signature.keygen();
    return new MlsMember(identity, ciphersuite, keyPair, cs);
  }

  /** The device's signature public key, the same in all its key packages and leaves. */
  get signaturePublicKey(): Uint8Array {
    return this.signatureKeyPair.publicKey;
  }

  /** A fresh key pair of this member's ciphersuite, for {@link KeyPackageOptions.signatureKeyPair}. */
  async newSignatureKeyPair(): Promise<SignatureKeyPair> {
    return this.cs.signature.keygen();
  }

  /** `count` ordinary key packages as MLSMessage bytes. */
  async keyPackages(count: number, opts: KeyPackageOptions = {}): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) out.push(await this.makeKeyPackage(opts, false));
    return out;
  }

  /** One key package carrying the last_resort extension, as MLSMessage bytes. */
  async lastResortKeyPackage(opts: KeyPackageOptions = {}): Promise<Uint8Array> {
    return this.makeKeyPackage(opts, true);
  }

  /** How many key packages this member still holds private keys for (consumed ones are forgotten). */
  get heldKeyPackages(): number {
    return this.keyStore.size;
  }

  /** Starts a new group (epoch 0) with this member alone at leaf 0. */
  async createGroup(groupId: Uint8Array): Promise<MlsGroup> {
    const key = toHex(groupId);
    if (this.groups.has(key)) throw new Error(`already in group ${key}`);
    // The creator's own leaf comes from a key package that is never uploaded, so it is not stored.
    const { keyPackage, privateKeyPackage } = await this.generate({}, false);
    const state = await createGroup(groupId, keyPackage, privateKeyPackage, [], this.cs);
    const group = new MlsGroup(this, state, this.cs);
    this.groups.set(key, group);
    return group;
  }

  /** Joins the group a Welcome (MLSMessage bytes) invites one of this member's key packages to. */
  async joinFromWelcome(welcomeMessage: Uint8Array): Promise<MlsGroup> {
    const message = decodeMessage(welcomeMessage);
    if (message.wireformat !== 'mls_welcome') {
      throw new Error(`expected mls_welcome, got ${message.wireformat}`);
    }
    const welcome = message.welcome;
    let match: [string, StoredKeyPackage] | undefined;
    for (const secrets of welcome.secrets) {
      const ref = toHex(secrets.newMember);
      const stored = this.keyStore.get(ref);
      if (stored !== undefined) {
        match = [ref, stored];
        break;
      }
    }
    if (match === undefined)
      throw new Error('the Welcome names none of this member’s key packages');
    const [ref, stored] = match;
    const cs = await suiteImpl(stored.keyPackage.cipherSuite);
    // The ratchet tree travels in the GroupInfo extension, so no out-of-band tree is passed.
    const state = await joinGroup(
      welcome,
      stored.keyPackage,
      stored.privateKeyPackage,
      emptyPskIndex,
      cs,
    );
    // A used key package's init key must never decrypt another Welcome; the last-resort one is
    // reused by design (the server hands it out repeatedly), so its keys are kept.
    if (!stored.lastResort) this.keyStore.delete(ref);
    const group = new MlsGroup(this, state, cs);
    const key = toHex(state.groupContext.groupId);
    if (this.groups.has(key)) throw new Error(`already in group ${key}`);
    this.groups.set(key, group);
    return group;
  }

  /** The group this member is in with that id, if any. */
  group(groupId: Uint8Array): MlsGroup | undefined {
    return this.groups.get(toHex(groupId));
  }

  private async makeKeyPackage(opts: KeyPackageOptions, lastResort: boolean): Promise<Uint8Array> {
    const generated = await this.generate(opts, lastResort);
    const ref = toHex(await makeKeyPackageRef(generated.keyPackage, this.cs.hash));
    this.keyStore.set(ref, { ...generated, lastResort });
    return encodeMessage({
      version: 'mls10',
      wireformat: 'mls_key_package',
      keyPackage: generated.keyPackage,
    });
  }

  private async generate(
    opts: KeyPackageOptions,
    lastResort: boolean,
  ): Promise<{ keyPackage: KeyPackage; privateKeyPackage: PrivateKeyPackage }> {
    const now = Date.now();
    // ts-mls's defaultLifetime is 0..2^63−1, which a careful server rejects as absurdly long.
    const lifetime: Lifetime = {
      notBefore: toSeconds(opts.notBefore ?? new Date(now - DEFAULT_LIFETIME_MS.before)),
      notAfter: toSeconds(opts.notAfter ?? new Date(now + DEFAULT_LIFETIME_MS.after)),
    };
    // ts-mls's defaultCapabilities() appends random GREASE values; fixed capabilities keep the
    // encoding deterministic. last_resort is a non-default extension, so the device declares it
    // (RFC 9420 §7.2: a leaf lists the non-default extensions it supports; OpenMLS expects this).
    const capabilities: Capabilities = {
      versions: ['mls10'],
      ciphersuites: [this.ciphersuite],
      extensions: [LAST_RESORT_EXTENSION_TYPE],
      proposals: [],
      credentials: ['basic'],
    };
    // last_resort sits in KeyPackage.extensions (not the leaf node's), with empty extension_data.
    const extensions: Extension[] = lastResort
      ? [{ extensionType: LAST_RESORT_EXTENSION_TYPE, extensionData: new Uint8Array() }]
      : [];
    const signatureKeyPair = opts.signatureKeyPair ?? this.signatureKeyPair;
    const { publicPackage, privatePackage } = await generateKeyPackageWithKey(
      { credentialType: 'basic', identity: utf8.encode(opts.identity ?? this.identity) },
      capabilities,
      lifetime,
      extensions,
      signatureKeyPair,
      this.cs,
    );
    let keyPackage = publicPackage;
    if (opts.breakLeafNodeSignature === true) {
      const leafSignature = Uint8Array.from(keyPackage.leafNode.signature);
      leafSignature[0] = (leafSignature[0] ?? 0) ^ 0x01;
      // signKeyPackage replaces the outer signature, so the old one may ride along in the input.
      keyPackage = await signKeyPackage(
        { ...keyPackage, leafNode: { ...keyPackage.leafNode, signature: leafSignature } },
        signatureKeyPair.signKey,
        this.cs.signature,
      );
    }
    return { keyPackage, privateKeyPackage: privatePackage };
  }
}

/** One group as seen by one member: a confirmed state plus at most one commit awaiting the server. */
export class MlsGroup {
  private pending: { state: ClientState; commit: string } | undefined;
  /** Messages this member sent, by hex bytes, so reading them back from the log needs no decryption. */
  private readonly sent = new Map<string, ProcessedMessage>();

  /** @internal Made by {@link MlsMember.createGroup} and {@link MlsMember.joinFromWelcome}. */
  constructor(
    /** The member this view belongs to. */
    readonly member: MlsMember,
    private state: ClientState,
    private readonly cs: CiphersuiteImpl,
  ) {}

  /** The group id. */
  get groupId(): Uint8Array {
    return this.state.groupContext.groupId;
  }

  /** The confirmed epoch (a pending commit does not count until {@link confirmCommit}). */
  get epoch(): bigint {
    return this.state.groupContext.epoch;
  }

  /** False once a commit removed this member. */
  get active(): boolean {
    return this.state.groupActiveState.kind === 'active';
  }

  /** This member's leaf index. */
  get leafIndex(): number {
    return this.state.privatePath.leafIndex;
  }

  /** Whether a commit is waiting for the server's verdict. */
  get hasPendingCommit(): boolean {
    return this.pending !== undefined;
  }

  /** Identities of the members in leaf order, `undefined` for blank leaves between members. */
  members(): (string | undefined)[] {
    const leaves: (string | undefined)[] = [];
    // Leaves sit at even node indices of the array-encoded tree (RFC 9420 §4.1).
    for (let node = 0; node < this.state.ratchetTree.length; node += 2) {
      const entry = this.state.ratchetTree[node];
      leaves.push(
        entry?.nodeType === 'leaf' ? credentialIdentity(entry.leaf.credential) : undefined,
      );
    }
    // The tree is padded to a power of two leaves; the padding is not a seat anyone left.
    while (leaves.length > 0 && leaves[leaves.length - 1] === undefined) leaves.pop();
    return leaves;
  }

  /** The GroupInfo of the confirmed state (external_pub and ratchet tree), as MLSMessage bytes. */
  async groupInfo(): Promise<Uint8Array> {
    const groupInfo = await createGroupInfoWithExternalPubAndRatchetTree(this.state, [], this.cs);
    return encodeMessage({ version: 'mls10', wireformat: 'mls_group_info', groupInfo });
  }

  /** Commits no proposals, only a fresh path (a key update); the state moves only on confirm. */
  async update(): Promise<CommitBundle> {
    return this.commit([]);
  }

  /** Commits Add proposals for key packages (MLSMessage bytes); the state moves only on confirm. */
  async addMembers(keyPackageMessages: Uint8Array[]): Promise<CommitBundle> {
    const proposals: Proposal[] = keyPackageMessages.map((bytes) => ({
      proposalType: 'add',
      add: { keyPackage: decodeKeyPackageMessage(bytes) },
    }));
    return this.commit(proposals);
  }

  /** Commits Remove proposals for every leaf holding one of these identities. */
  async removeMembers(identities: string[]): Promise<CommitBundle> {
    const leaves = this.members();
    const proposals: Proposal[] = identities.map((identity) => {
      const removed = leaves.indexOf(identity);
      if (removed < 0) throw new Error(`${identity} is not in the group`);
      return { proposalType: 'remove', remove: { removed } };
    });
    return this.commit(proposals);
  }

  /** Adopts the pending commit's state, once the server accepted the commit. */
  confirmCommit(): void {
    if (this.pending === undefined) throw new Error('no pending commit');
    this.state = this.pending.state;
    this.sent.set(this.pending.commit, { kind: 'commit', epoch: this.epoch, own: true });
    this.pending = undefined;
  }

  /** Drops the pending commit, e.g. after the server answered STALE_EPOCH. */
  discardCommit(): void {
    this.pending = undefined;
  }

  /** Applies a commit or proposal, or decrypts an application message (MLSMessage bytes). */
  async processMessage(bytes: Uint8Array): Promise<ProcessedMessage> {
    const key = toHex(bytes);
    const known = this.sent.get(key);
    // ts-mls cannot process a member's own messages (its ratchets moved on when sending); the
    // conversation log echoes them back, so they are recognised by their bytes instead.
    if (known !== undefined) return known;
    if (this.pending?.commit === key) {
      // Seeing our own commit in the server's log means the server accepted it.
      this.confirmCommit();
      return { kind: 'commit', epoch: this.epoch, own: true };
    }
    const message = decodeMessage(bytes);
    if (
      message.wireformat !== 'mls_public_message' &&
      message.wireformat !== 'mls_private_message'
    ) {
      throw new Error(`cannot process ${message.wireformat} as a group message`);
    }
    const result = await processMessage(message, this.state, emptyPskIndex, acceptAll, this.cs);
    // Secrets in result.consumed are left alone: a test client keeps no secrets at rest, and zeroing
    // them could corrupt an old state still needed if a pending commit is discarded.
    this.state = result.newState;
    if (result.kind === 'applicationMessage') {
      return { kind: 'application', plaintext: result.message, own: false };
    }
    const contentType =
      message.wireformat === 'mls_public_message'
        ? message.publicMessage.content.contentType
        : message.privateMessage.contentType;
    if (contentType !== 'commit') return { kind: 'proposal' };
    // Another member's commit took the epoch our pending commit was made for; ours can never apply.
    this.pending = undefined;
    return { kind: 'commit', epoch: this.epoch, own: false };
  }

  /**
   * Forgery: the commit's FramedContent re-signed with `signKey` (not this member's leaf key),
   * over this member's confirmed group context, i.e. the epoch the commit was made in.
   */
  async resignCommit(commit: Uint8Array, signKey: Uint8Array): Promise<Uint8Array> {
    const { message, publicMessage, auth } = decodePublicCommit(commit);
    const tbs = toTbs(publicMessage.content, 'mls_public_message', this.state.groupContext);
    const signature = await signFramedContentTBS(signKey, tbs, this.cs.signature);
    return encodeMessage({
      ...message,
      publicMessage: { ...publicMessage, auth: { ...auth, signature } },
    });
  }

  /**
   * Forgery: a GroupInfo (MLSMessage bytes) signed again by this member as its signer, after
   * `edit` changed its ratchet tree (the group context's tree hash follows the edited tree).
   */
  async resignGroupInfo(
    groupInfoMessage: Uint8Array,
    edit: (tree: RatchetTree) => void = () => undefined,
  ): Promise<Uint8Array> {
    const message = decodeMessage(groupInfoMessage);
    if (message.wireformat !== 'mls_group_info') throw new Error('expected a GroupInfo');
    const { groupInfo } = message;
    const extensions = groupInfo.extensions.map((extension) => {
      if (extension.extensionType !== 'ratchet_tree') return extension;
      const decoded = decodeRatchetTree(extension.extensionData, 0);
      if (decoded === undefined) throw new Error('undecodable ratchet tree');
      edit(decoded[0]);
      return { ...extension, extensionData: encodeRatchetTree(decoded[0]) };
    });
    const treeExtension = extensions.find(
      (extension) => extension.extensionType === 'ratchet_tree',
    );
    const tree =
      treeExtension === undefined ? undefined : decodeRatchetTree(treeExtension.extensionData, 0);
    if (tree === undefined) throw new Error('no ratchet tree');
    const signed = await signGroupInfo(
      {
        groupContext: {
          ...groupInfo.groupContext,
          treeHash: await treeHashRoot(tree[0], this.cs.hash),
        },
        extensions,
        confirmationTag: groupInfo.confirmationTag,
        signer: this.leafIndex,
      },
      this.state.signaturePrivateKey,
      this.cs.signature,
    );
    return encodeMessage({ version: 'mls10', wireformat: 'mls_group_info', groupInfo: signed });
  }

  /** Encrypts an application message as a PrivateMessage (MLSMessage bytes) in the confirmed epoch. */
  async encrypt(plaintext: Uint8Array | string): Promise<Uint8Array> {
    const data = typeof plaintext === 'string' ? utf8.encode(plaintext) : plaintext;
    const { newState, privateMessage } = await createApplicationMessage(this.state, data, this.cs);
    this.state = newState;
    const bytes = encodeMessage({
      version: 'mls10',
      wireformat: 'mls_private_message',
      privateMessage,
    });
    this.sent.set(toHex(bytes), { kind: 'application', plaintext: data, own: true });
    return bytes;
  }

  private async commit(proposals: Proposal[]): Promise<CommitBundle> {
    if (this.pending !== undefined)
      throw new Error('a commit is already pending; confirm or discard it');
    const epoch = this.epoch;
    const { newState, welcome, commit } = await createCommit(
      { state: this.state, cipherSuite: this.cs },
      // The server orders commits by reading their framing, hence PublicMessage; joiners get the
      // tree inside the Welcome's GroupInfo, hence the ratchet_tree extension.
      { extraProposals: proposals, wireAsPublicMessage: true, ratchetTreeExtension: true },
    );
    // The server keeps this GroupInfo for external joins, so it carries external_pub and the tree.
    const groupInfo = await createGroupInfoWithExternalPubAndRatchetTree(newState, [], this.cs);
    const commitBytes = encodeMessage(commit);
    this.pending = { state: newState, commit: toHex(commitBytes) };
    return {
      commit: commitBytes,
      welcome:
        welcome === undefined
          ? undefined
          : encodeMessage({ version: 'mls10', wireformat: 'mls_welcome', welcome }),
      groupInfo: encodeMessage({ version: 'mls10', wireformat: 'mls_group_info', groupInfo }),
      epoch,
    };
  }
}
