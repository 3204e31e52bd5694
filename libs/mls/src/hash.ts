import { createHash } from 'node:crypto';

import type { RatchetTree } from 'ts-mls';
import { encodeParentNode } from 'ts-mls/parentNode.js';
import {
  isLeaf,
  left,
  nodeToLeafIndex,
  right,
  rootFromNodeWidth,
  type NodeIndex,
} from 'ts-mls/treemath.js';

import { CIPHERSUITE_NAMES } from './ciphersuites.js';
import { MlsError } from './errors.js';

/**
 * Synchronous hashing with node:crypto. libs/mls runs on the server only (nothing shipped to a
 * browser imports it), and one WebCrypto digest per tree node — a promise and a round trip to the
 * libuv pool each — cost more than the hashing itself: ~35 ms for a tree of 1,000 leaves against
 * ~2 ms here. ts-mls's own async hash stays in use wherever ts-mls hashes for itself.
 */

/** Hashes the concatenation of `parts` with the ciphersuite's hash. */
export type SyncHash = (...parts: Uint8Array[]) => Uint8Array;

const hashes = new Map<number, SyncHash>();

/** The ciphersuite's hash (RFC 9420 §17.1: SHA-256, -384 or -512, named in the suite). */
export function syncHash(ciphersuite: number): SyncHash {
  const cached = hashes.get(ciphersuite);
  if (cached !== undefined) return cached;
  const bits = /_SHA(256|384|512)_/.exec(CIPHERSUITE_NAMES[ciphersuite] ?? '')?.[1];
  if (bits === undefined)
    throw new MlsError('UNSUPPORTED_CIPHERSUITE', `ciphersuite ${ciphersuite}`);
  const algorithm = `sha${bits}`;
  const hash: SyncHash = (...parts) => {
    const h = createHash(algorithm);
    for (const part of parts) h.update(part);
    return new Uint8Array(h.digest());
  };
  hashes.set(ciphersuite, hash);
  return hash;
}

/** RFC 9000 §16 variable-length integer as MLS uses it for vector lengths (RFC 9420 §2.1.2). */
export function varintLength(length: number): Uint8Array {
  if (length < 0x40) return Uint8Array.of(length);
  if (length < 0x4000) return Uint8Array.of(0x40 | (length >>> 8), length & 0xff);
  if (length < 0x40000000) {
    return Uint8Array.of(
      0x80 | (length >>> 24),
      (length >>> 16) & 0xff,
      (length >>> 8) & 0xff,
      length & 0xff,
    );
  }
  throw new MlsError('TOO_LARGE', `a vector of ${length} bytes`);
}

const TEXT = new TextEncoder();

/** RFC 9420 §5.2 RefHash(label, value) = Hash(RefHashInput{label, value}), synchronously. */
export function refHashSync(ciphersuite: number, label: string, value: Uint8Array): Uint8Array {
  const labelBytes = TEXT.encode(label);
  return syncHash(ciphersuite)(
    varintLength(labelBytes.length),
    labelBytes,
    varintLength(value.length),
    value,
  );
}

/** The KeyPackageRef (RFC 9420 §5.2) of a bare, already-encoded KeyPackage, synchronously. */
export function keyPackageRefSync(ciphersuite: number, keyPackage: Uint8Array): Uint8Array {
  return refHashSync(ciphersuite, 'MLS 1.0 KeyPackage Reference', keyPackage);
}

// NodeType (RFC 9420 §7.8): leaf(1), parent(2); optional<T> presence octets.
const LEAF = Uint8Array.of(1);
const PARENT = Uint8Array.of(2);
const PRESENT = Uint8Array.of(1);
const ABSENT = Uint8Array.of(0);

/** A tree with the tree hash of each of its nodes (by node index), computed with one hash. */
export interface TreeHashes {
  tree: RatchetTree;
  hashes: readonly (Uint8Array | undefined)[];
}

/** Options of treeHashRootSync. */
export interface TreeHashOptions {
  /**
   * An earlier tree and its node hashes, computed with the same hash: a subtree all of whose
   * nodes are the very same objects (or blank) at the same indices there has the same hash, and
   * it is taken over instead of computed again.
   */
  previous?: TreeHashes | null;
  /** Filled with the tree hash of every node, by node index. */
  hashes?: Uint8Array[];
}

/**
 * RFC 9420 §7.8 tree_hash of the root, the same value ts-mls's `treeHashRoot` computes, hashing
 * synchronously. `leafBytes(leafIndex)` gives a leaf's encoded LeafNode (callers keep them, as the
 * commit checks compare leaves by their bytes too), so leaves are not encoded a second time.
 */
export function treeHashRootSync(
  tree: RatchetTree,
  hash: SyncHash,
  leafBytes: (leafIndex: number) => Uint8Array | undefined,
  { previous = null, hashes }: TreeHashOptions = {},
): Uint8Array {
  const uint32 = new Uint8Array(4);
  const view = new DataView(uint32.buffer);
  // The earlier hash of a node whose own object is the same there, or undefined.
  const earlier = (nodeIndex: NodeIndex): Uint8Array | undefined =>
    previous !== null &&
    nodeIndex < previous.tree.length &&
    previous.tree[nodeIndex] === tree[nodeIndex]
      ? previous.hashes[nodeIndex]
      : undefined;
  // [hash, whether it is the earlier tree's hash of the same subtree]
  const visit = (nodeIndex: NodeIndex): [Uint8Array, boolean] => {
    if (isLeaf(nodeIndex)) {
      const known = earlier(nodeIndex);
      const value = known ?? treeHash(nodeIndex, null, null);
      if (hashes !== undefined) hashes[nodeIndex] = value;
      return [value, known !== undefined];
    }
    const [leftHash, leftKnown] = visit(left(nodeIndex));
    const [rightHash, rightKnown] = visit(right(nodeIndex));
    const known = leftKnown && rightKnown ? earlier(nodeIndex) : undefined;
    const value = known ?? treeHash(nodeIndex, leftHash, rightHash);
    if (hashes !== undefined) hashes[nodeIndex] = value;
    return [value, known !== undefined];
  };
  const treeHash = (
    nodeIndex: NodeIndex,
    leftHash: Uint8Array | null,
    rightHash: Uint8Array | null,
  ): Uint8Array => {
    if (isLeaf(nodeIndex)) {
      const leafIndex = nodeToLeafIndex(nodeIndex);
      view.setUint32(0, leafIndex);
      const node = tree[nodeIndex];
      if (node === undefined) return hash(LEAF, uint32, ABSENT);
      if (node.nodeType !== 'leaf') throw new MlsError('INVALID_TREE', 'parent node at a leaf');
      const bytes = leafBytes(leafIndex);
      if (bytes === undefined) throw new Error(`no bytes for leaf ${leafIndex}`);
      return hash(LEAF, uint32, PRESENT, bytes);
    }
    const node = tree[nodeIndex];
    if (node?.nodeType === 'leaf') throw new MlsError('INVALID_TREE', 'leaf node at a parent');
    if (leftHash === null || rightHash === null) throw new Error('parent hashed without children');
    return hash(
      PARENT,
      ...(node === undefined ? [ABSENT] : [PRESENT, encodeParentNode(node.parent)]),
      varintLength(leftHash.length),
      leftHash,
      varintLength(rightHash.length),
      rightHash,
    );
  };
  return visit(rootFromNodeWidth(tree.length))[0];
}
