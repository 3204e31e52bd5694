import type { CiphersuiteImpl, GroupInfo, RatchetTree } from 'ts-mls';
import { decodeOptional } from 'ts-mls/codec/optional.js';
import { decodeVarLenData } from 'ts-mls/codec/variableLength.js';
import { verifyGroupInfoSignature } from 'ts-mls/groupInfo.js';
import {
  encodeLeafNode,
  type LeafNode,
  verifyLeafNodeSignature,
  verifyLeafNodeSignatureKeyPackage,
} from 'ts-mls/leafNode.js';
import { verifyParentHashes } from 'ts-mls/parentHash.js';
import { decodeNode, extendRatchetTree } from 'ts-mls/ratchetTree.js';
import { directPath, leafWidth, toNodeIndex } from 'ts-mls/treemath.js';

import { ciphersuiteId, ciphersuiteImpl, isSupportedCiphersuite } from './ciphersuites.js';
import { bytesEqual, bytesKey, copyBytes, verifies } from './bytes.js';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  MLS_MESSAGE_HEADER_BYTES,
  decodeAs,
  resolveMaxBytes,
  type DecodeOptions,
} from './codec.js';
import { MlsError, asMlsError } from './errors.js';
import { syncHash, treeHashRootSync, type TreeHashes } from './hash.js';
import { basicIdentity } from './inspect.js';

/** One occupied leaf of a group's ratchet tree: which client sits where. */
export interface RosterLeaf {
  leafIndex: number;
  /** Basic credential identity bytes. */
  identity: Uint8Array;
  /** Leaf node signature_key. */
  signatureKey: Uint8Array;
}

/** A GroupInfo whose signature, tree hash and leaves verified. */
export interface VerifiedGroupInfo {
  groupId: Uint8Array;
  epoch: bigint;
  ciphersuite: number;
  /** Leaf index of the member that signed the GroupInfo. */
  signer: number;
  /**
   * Occupied leaves in leaf-index order. Their byte arrays are copies (never views of the input),
   * shared by the results of every tree holding the same decoded leaf: read them, do not change them.
   */
  leaves: RosterLeaf[];
  /** Whether the GroupInfo carries external_pub, i.e. can be used for an external join. */
  externalPub: boolean;
}

/** Options of verifyGroupInfo. */
export interface VerifyGroupInfoOptions extends DecodeOptions {
  /**
   * Also verify RFC 9420 §7.9.2 parent hashes. Off by default: ts-mls's check costs O(n²)
   * hashes in the number of leaves, the delivery service never uses parent nodes, and every
   * joining client verifies them itself.
   */
  verifyParentHashes?: boolean;
}

const RATCHET_TREE_EXTENSION = 'ratchet_tree';
const EXTERNAL_PUB_EXTENSION = 'external_pub';

/** A decoded tree and the encoding of each of its nodes (optional<Node>), by node index. */
interface EncodedTree {
  tree: RatchetTree;
  nodes: readonly Uint8Array[];
}

const decodeOptionalNode = decodeOptional(decodeNode);

/**
 * RFC 9420 §12.4.3.3 ratchet_tree: optional<Node> nodes[V], as ts-mls's decodeRatchetTree reads
 * it, node by node. A node whose encoding is byte-identical to the one at the same index in
 * `reuse` is taken over instead of decoded: TLS decoding is deterministic and reads exactly the
 * bytes it consumes, so the same bytes decode to the same node (trees are never changed after
 * decoding, so sharing nodes is safe). A commit changes a few nodes of a big tree, and decoding
 * the rest again (1,000 leaves: ~15 ms) is what this saves.
 */
function decodeTreeNodes(data: Uint8Array, reuse: EncodedTree | null): EncodedTree {
  const vector = decodeVarLenData(data, 0);
  if (vector?.[1] !== data.length) {
    throw new MlsError('DECODE', 'malformed ratchet_tree extension');
  }
  const [content] = vector;
  const nodes: RatchetTree = [];
  const encoded: Uint8Array[] = [];
  let cursor = 0;
  while (cursor < content.length) {
    const index = nodes.length;
    const known = reuse?.nodes[index];
    const end = cursor + (known?.length ?? 0);
    if (known !== undefined && end <= content.length) {
      const bytes = content.subarray(cursor, end);
      if (bytesEqual(bytes, known)) {
        nodes.push(reuse?.tree[index]);
        encoded.push(bytes);
        cursor = end;
        continue;
      }
    }
    const decoded = decodeOptionalNode(content, cursor);
    if (decoded === undefined || cursor + decoded[1] > content.length) {
      throw new MlsError('DECODE', 'malformed ratchet_tree extension');
    }
    nodes.push(decoded[0]);
    encoded.push(content.subarray(cursor, cursor + decoded[1]));
    cursor += decoded[1];
  }
  // Throws when the last node is blank, which RFC 9420 §12.4.3.3 forbids.
  return { tree: extendRatchetTree(nodes), nodes: encoded };
}

function ratchetTreeOf(groupInfo: GroupInfo, reuse: EncodedTree | null): EncodedTree {
  const extensions = groupInfo.extensions.filter(
    (extension) => extension.extensionType === RATCHET_TREE_EXTENSION,
  );
  const [extension, ...others] = extensions;
  if (extension === undefined)
    throw new MlsError('MISSING_RATCHET_TREE', 'no ratchet_tree extension');
  if (others.length > 0) throw new MlsError('INVALID_TREE', 'more than one ratchet_tree extension');
  try {
    return decodeTreeNodes(extension.extensionData, reuse);
  } catch (error) {
    throw asMlsError(error, 'INVALID_TREE');
  }
}

/** What checkTree derives from a leaf node alone, kept for the trees that share the node. */
interface LeafFacts {
  /** Set-membership keys of the leaf's HPKE and signature keys. */
  encryptionKey: string;
  signatureKey: string;
  /** The roster's copies of its identity and signature key, once made. */
  roster?: { identity: Uint8Array; signatureKey: Uint8Array };
}

/**
 * Per decoded LeafNode: a commit's tree shares most nodes with the stored one (see
 * decodeTreeNodes), and for 1,000 leaves the keys and copies cost more than the rest of checkTree.
 */
const leafFacts = new WeakMap<LeafNode, LeafFacts>();

function leafFactsOf(leaf: LeafNode): LeafFacts {
  let facts = leafFacts.get(leaf);
  if (facts === undefined) {
    facts = {
      encryptionKey: bytesKey(leaf.hpkePublicKey),
      signatureKey: bytesKey(leaf.signaturePublicKey),
    };
    leafFacts.set(leaf, facts);
  }
  return facts;
}

/** RFC 9420 §7.8/§7.9/§12.4.3.1 checks that need no secrets, over a tree already extended to full width. */
async function checkTree(
  message: GroupInfoMessage,
  { parentHashes, knownLeaf }: { parentHashes: boolean; knownLeaf: KnownLeaf | null },
): Promise<RosterLeaf[]> {
  const { groupInfo, tree, impl } = partsOf(message);
  const leafBytes = leafBytesOf(message);
  const { groupId, treeHash } = groupInfo.groupContext;
  // Signatures still to verify, run together once the cheap checks passed: each is a round trip
  // to the libuv pool, and one after another they left its threads idle.
  const pending: { leafIndex: number; check: () => Promise<boolean> }[] = [];
  const width = leafWidth(tree.length);
  const encryptionKeys = new Set<string>();
  const signatureKeys = new Set<string>();
  const leaves: RosterLeaf[] = [];
  for (const [nodeIndex, node] of tree.entries()) {
    if (node === undefined) continue;
    const isLeafPosition = nodeIndex % 2 === 0;
    if (isLeafPosition !== (node.nodeType === 'leaf')) {
      throw new MlsError('INVALID_TREE', `${node.nodeType} node at node index ${nodeIndex}`);
    }
    if (node.nodeType === 'parent') {
      const encryptionKey = bytesKey(node.parent.hpkePublicKey);
      if (encryptionKeys.has(encryptionKey))
        throw new MlsError('INVALID_TREE', 'encryption keys not unique');
      encryptionKeys.add(encryptionKey);
      for (const unmerged of node.parent.unmergedLeaves) {
        const leafNodeIndex = 2 * unmerged;
        if (leafNodeIndex >= tree.length || tree[leafNodeIndex] === undefined) {
          throw new MlsError('INVALID_TREE', 'unmerged leaf is blank or outside the tree');
        }
        const path = directPath(toNodeIndex(leafNodeIndex), width);
        const position = path.indexOf(toNodeIndex(nodeIndex));
        if (position < 0) throw new MlsError('INVALID_TREE', 'unmerged leaf is not a descendant');
        // Every non-blank node between the leaf and this one must list it too (RFC 9420 §7.8).
        for (const between of path.slice(0, position)) {
          const intermediate = tree[between];
          if (
            intermediate?.nodeType === 'parent' &&
            !intermediate.parent.unmergedLeaves.includes(unmerged)
          ) {
            throw new MlsError('INVALID_TREE', 'unmerged leaf missing from an intermediate node');
          }
        }
      }
      continue;
    }
    const leafIndex = nodeIndex / 2;
    const { leaf } = node;
    const facts = leafFactsOf(leaf);
    const { encryptionKey, signatureKey } = facts;
    if (encryptionKeys.has(encryptionKey))
      throw new MlsError('INVALID_TREE', 'encryption keys not unique');
    if (signatureKeys.has(signatureKey))
      throw new MlsError('INVALID_TREE', 'signature keys not unique');
    encryptionKeys.add(encryptionKey);
    signatureKeys.add(signatureKey);
    // A leaf byte-identical to one verified before has the same verdict: the signed content
    // (including group id and leaf index for non-key-package leaves) is the same.
    const bytes = leafBytes.get(leafIndex);
    const known = bytes !== undefined && (knownLeaf?.(leafIndex, bytes) ?? false);
    if (!known) {
      // Leaves from a key package were signed without group context; the others with it.
      pending.push({
        leafIndex,
        check:
          leaf.leafNodeSource === 'key_package'
            ? () => verifyLeafNodeSignatureKeyPackage(leaf, impl.signature)
            : () => verifyLeafNodeSignature(leaf, groupId, leafIndex, impl.signature),
      });
    }
    facts.roster ??= {
      identity: basicIdentity(leaf.credential),
      signatureKey: copyBytes(leaf.signaturePublicKey),
    };
    leaves.push({ leafIndex, ...facts.roster });
  }
  const verdicts = await Promise.all(pending.map(({ check }) => verifies(check)));
  // The first failing leaf in index order, whichever verification finished first.
  const failed = pending.find((_, i) => verdicts[i] !== true);
  if (failed !== undefined) throw new MlsError('BAD_LEAF_SIGNATURE', `leaf ${failed.leafIndex}`);
  // The signer signed the group context, and with it tree_hash: this binds the tree to the signature.
  const hash = syncHash(message.ciphersuite);
  const hashes: Uint8Array[] = [];
  const root = treeHashRootSync(tree, hash, (leafIndex) => leafBytes.get(leafIndex), {
    previous: hashBase.get(message) ?? null,
    hashes,
  });
  hashBase.delete(message);
  // Kept whatever the verdict: they are what this tree hashes to, for a tree decoded from it.
  treeHashes.set(message, { tree, hashes });
  if (!bytesEqual(root, treeHash)) {
    throw new MlsError('INVALID_TREE', 'tree hash does not match the group context');
  }
  if (parentHashes && !(await verifies(() => verifyParentHashes(tree, impl.hash)))) {
    throw new MlsError('INVALID_TREE', 'parent hashes do not verify');
  }
  return leaves;
}

/**
 * A GroupInfo decoded strictly (size, canonical encoding, supported ciphersuite, one well-formed
 * ratchet_tree extension) but not yet verified; the handle the commit checks work on.
 */
export class GroupInfoMessage {
  /** @internal Made by {@link decodeGroupInfo} only. */
  constructor(
    /** Group id from the group context. */
    readonly groupId: Uint8Array,
    /** Epoch from the group context. */
    readonly epoch: bigint,
    /** Ciphersuite from the group context. */
    readonly ciphersuite: number,
    /** Leaf index the GroupInfo claims as its signer. */
    readonly signer: number,
  ) {}
}

/** What libs/mls keeps of a decoded GroupInfo; ts-mls objects never leave the library. */
export interface GroupInfoParts {
  groupInfo: GroupInfo;
  tree: RatchetTree;
  impl: CiphersuiteImpl;
}

const groupInfoParts = new WeakMap<GroupInfoMessage, GroupInfoParts>();
const leafBytesCache = new WeakMap<GroupInfoMessage, ReadonlyMap<number, Uint8Array>>();
/** The encoding of each node of a message's tree, for a later tree decoded from it. */
const encodedNodes = new WeakMap<GroupInfoMessage, readonly Uint8Array[]>();
/** Every node's tree hash, once the message's tree hash was computed. */
const treeHashes = new WeakMap<GroupInfoMessage, TreeHashes>();
/**
 * The hashes of the tree a message's tree took nodes over from, until its own tree hash is
 * computed: the hashes, not the earlier message, so that a chain of epochs is not kept alive.
 */
const hashBase = new WeakMap<GroupInfoMessage, TreeHashes>();
/** Encoded LeafNodes by the decoded object, which a later tree may share (see decodeTreeNodes). */
const encodedLeaves = new WeakMap<LeafNode, Uint8Array>();

/**
 * @internal Leaf index → encoded LeafNode of every occupied leaf of the message's tree, encoded
 * once per decoded message: the tree hash, the leaf comparisons of a commit and the known-leaf
 * lookups all work on these bytes. The trees are never changed after decoding.
 */
export function leafBytesOf(message: GroupInfoMessage): ReadonlyMap<number, Uint8Array> {
  const cached = leafBytesCache.get(message);
  if (cached !== undefined) return cached;
  const { tree } = partsOf(message);
  const leaves = new Map<number, Uint8Array>();
  for (let node = 0; node < tree.length; node += 2) {
    const entry = tree[node];
    if (entry?.nodeType !== 'leaf') continue;
    let bytes = encodedLeaves.get(entry.leaf);
    if (bytes === undefined) {
      bytes = encodeLeafNode(entry.leaf);
      encodedLeaves.set(entry.leaf, bytes);
    }
    leaves.set(node / 2, bytes);
  }
  leafBytesCache.set(message, leaves);
  return leaves;
}

/** @internal The ts-mls objects behind a handle, for the checks in this library. */
export function partsOf(message: GroupInfoMessage): GroupInfoParts {
  const parts = groupInfoParts.get(message);
  if (parts === undefined) throw new TypeError('not a GroupInfoMessage from decodeGroupInfo');
  return parts;
}

/** Options of decodeGroupInfo. */
export interface DecodeGroupInfoOptions extends DecodeOptions {
  /**
   * A GroupInfo of the same group decoded before (the stored one of the epoch a commit leads
   * from): tree nodes whose encoding is byte-identical at the same index are taken over from it
   * rather than decoded again, and the tree hashes of unchanged subtrees, once computed for it.
   * The result is the same as without it; only the work differs.
   */
  previous?: GroupInfoMessage | null;
}

/** Decodes an MLSMessage(group_info) with its ratchet tree, without verifying any signature. */
export async function decodeGroupInfo(
  bytes: Uint8Array,
  options: DecodeGroupInfoOptions = {},
): Promise<GroupInfoMessage> {
  const maxBytes = resolveMaxBytes(options.maxBytes, DEFAULT_MAX_MESSAGE_BYTES);
  try {
    const { groupInfo } = decodeAs(bytes, 'group_info', maxBytes, MLS_MESSAGE_HEADER_BYTES);
    const context = groupInfo.groupContext;
    const ciphersuite = ciphersuiteId(context.cipherSuite);
    if (!isSupportedCiphersuite(ciphersuite)) {
      throw new MlsError('UNSUPPORTED_CIPHERSUITE', `ciphersuite ${ciphersuite}`);
    }
    const impl = await ciphersuiteImpl(ciphersuite);
    const previous = options.previous ?? null;
    const previousNodes = previous === null ? undefined : encodedNodes.get(previous);
    const { tree, nodes } = ratchetTreeOf(
      groupInfo,
      previous === null || previousNodes === undefined
        ? null
        : { tree: partsOf(previous).tree, nodes: previousNodes },
    );
    const message = new GroupInfoMessage(
      copyBytes(context.groupId),
      context.epoch,
      ciphersuite,
      groupInfo.signer,
    );
    groupInfoParts.set(message, { groupInfo, tree, impl });
    encodedNodes.set(message, nodes);
    // Node hashes depend on the hash function too.
    const base = previous === null ? undefined : treeHashes.get(previous);
    if (base !== undefined && previous?.ciphersuite === ciphersuite) hashBase.set(message, base);
    return message;
  } catch (error) {
    throw asMlsError(error, 'DECODE');
  }
}

/**
 * Leaves whose signatures need no second check: a caller that verified them before (in the
 * previous epoch's tree, or in a key package it validated) names them here by their bytes.
 */
export type KnownLeaf = (leafIndex: number, leafNode: Uint8Array) => boolean;

/** Options of verifyGroupInfoMessage. */
export interface VerifyGroupInfoMessageOptions {
  /** See {@link VerifyGroupInfoOptions.verifyParentHashes}. */
  verifyParentHashes?: boolean;
  /** Leaves to accept without verifying their signature again; every other leaf is verified. */
  knownLeaf?: KnownLeaf;
}

/** Verifies a decoded GroupInfo: its signature against the signer's leaf, its tree (keys unique, leaf signatures, tree hash). */
export async function verifyGroupInfoMessage(
  message: GroupInfoMessage,
  options: VerifyGroupInfoMessageOptions = {},
): Promise<VerifiedGroupInfo> {
  const { groupInfo, tree, impl } = partsOf(message);
  try {
    const signerNode = tree[2 * groupInfo.signer];
    if (signerNode?.nodeType !== 'leaf') throw new MlsError('INVALID_TREE', 'signer leaf is blank');
    const signed = await verifies(() =>
      verifyGroupInfoSignature(groupInfo, signerNode.leaf.signaturePublicKey, impl.signature),
    );
    if (!signed) throw new MlsError('BAD_SIGNATURE', 'GroupInfoTBS signature does not verify');
    const leaves = await checkTree(message, {
      parentHashes: options.verifyParentHashes ?? false,
      knownLeaf: options.knownLeaf ?? null,
    });
    return {
      groupId: copyBytes(message.groupId),
      epoch: message.epoch,
      ciphersuite: message.ciphersuite,
      signer: groupInfo.signer,
      leaves,
      externalPub: groupInfo.extensions.some((e) => e.extensionType === EXTERNAL_PUB_EXTENSION),
    };
  } catch (error) {
    throw asMlsError(error, 'DECODE');
  }
}

/** Decodes an MLSMessage(group_info): group id, epoch, ciphersuite, the ratchet tree from the ratchet_tree extension (required) as a list of occupied leaves {leafIndex, identity, signatureKey}, and verifies the GroupInfo signature against the signer's leaf signature key. */
export async function verifyGroupInfo(
  bytes: Uint8Array,
  options: VerifyGroupInfoOptions = {},
): Promise<VerifiedGroupInfo> {
  const message = await decodeGroupInfo(bytes, options);
  return verifyGroupInfoMessage(message, {
    verifyParentHashes: options.verifyParentHashes ?? false,
  });
}
