import type { CiphersuiteImpl, KeyPackage, LeafNode } from 'ts-mls';
import { mapDecoders } from 'ts-mls/codec/tlsDecoder.js';
import { decodeVarLenData } from 'ts-mls/codec/variableLength.js';
import { decodeCiphersuite } from 'ts-mls/crypto/ciphersuite.js';
import { extensionTypeToNumber, extensionsSupportedByCapabilities } from 'ts-mls/extension.js';
import { verifyKeyPackage } from 'ts-mls/keyPackage.js';
import { decodeLeafNode, verifyLeafNodeSignatureKeyPackage } from 'ts-mls/leafNode.js';
import { decodeProtocolVersion } from 'ts-mls/protocolVersion.js';

import {
  ciphersuiteId,
  ciphersuiteImpl,
  isSupportedCiphersuite,
  keyPackageRef,
} from './ciphersuites.js';
import { bytesEqual, copyBytes, verifies } from './bytes.js';
import {
  DEFAULT_MAX_KEY_PACKAGE_BYTES,
  MLS_MESSAGE_HEADER_BYTES,
  decodeAs,
  resolveMaxBytes,
} from './codec.js';
import { MlsError, asMlsError } from './errors.js';

/** Policy for key-package validation. */
export interface KeyPackagePolicy {
  /** Numeric MLS ciphersuite ids the server accepts; each must also be in SUPPORTED_CIPHERSUITES. */
  supportedCiphersuites: readonly number[];
  /** Longest accepted not_after − not_before, in seconds (clockSkewSeconds is added as slack). */
  maxLifetimeSeconds: number;
  /** The instant the lifetime must cover. */
  now: Date;
  /** Tolerated difference between the client's clock and ours, in seconds. */
  clockSkewSeconds: number;
  /** Size limit of the whole MLSMessage; DEFAULT_MAX_KEY_PACKAGE_BYTES when absent. */
  maxBytes?: number;
}

/** What the server keeps of a validated key package. */
export interface ValidatedKeyPackage {
  /** Numeric MLS ciphersuite id. */
  ciphersuite: number;
  /** KeyPackageRef: RefHash("MLS 1.0 KeyPackage Reference", KeyPackage) over the bytes as received. */
  ref: Uint8Array;
  /** Basic credential identity bytes. */
  identity: Uint8Array;
  /** Leaf node signature_key. */
  signatureKey: Uint8Array;
  /** Leaf node lifetime start. */
  notBefore: Date;
  /** Leaf node lifetime end. */
  notAfter: Date;
  /**
   * The types of the key package's own extensions (not the leaf's), in wire order. What a type
   * means to Parley (0x000A: last resort) is the caller's to decide, in `@parley/protocol`.
   */
  extensionTypes: number[];
}

// Prefix of a KeyPackage up to its leaf node, decoded without insisting on leaf_node_source.
const decodeKeyPackagePrefix = mapDecoders(
  [decodeProtocolVersion, decodeCiphersuite, decodeVarLenData, decodeLeafNode],
  (_version, _suite, _initKey, leafNode) => leafNode,
);

function decodeKeyPackageMessage(message: Uint8Array, maxBytes: number): KeyPackage {
  try {
    return decodeAs(message, 'key_package', maxBytes, MLS_MESSAGE_HEADER_BYTES).keyPackage;
  } catch (error) {
    if (!(error instanceof MlsError) || error.reason !== 'DECODE') throw error;
    // ts-mls only decodes key_package leaves, so a leaf from a commit or an update fails as
    // "malformed"; say precisely what is wrong.
    let leaf: LeafNode | undefined;
    try {
      leaf = decodeKeyPackagePrefix(message, MLS_MESSAGE_HEADER_BYTES)?.[0];
    } catch {
      leaf = undefined;
    }
    if (leaf !== undefined && leaf.leafNodeSource !== 'key_package') {
      throw new MlsError('INVALID_LEAF', `leaf_node_source is ${leaf.leafNodeSource}`);
    }
    throw error;
  }
}

function checkLeafShape(keyPackage: KeyPackage, ciphersuite: number): Uint8Array {
  const leaf = keyPackage.leafNode;
  // Defensive: the decoder already only yields key_package leaves.
  if ((leaf.leafNodeSource as string) !== 'key_package') {
    throw new MlsError('INVALID_LEAF', 'leaf_node_source is not key_package');
  }
  if (leaf.credential.credentialType !== 'basic') {
    throw new MlsError(
      'UNSUPPORTED_CREDENTIAL',
      `credential type ${leaf.credential.credentialType}`,
    );
  }
  // RFC 9420 §10.1: a shared key would let a Welcome's HPKE ciphertext double as a path secret's.
  if (bytesEqual(keyPackage.initKey, leaf.hpkePublicKey)) {
    throw new MlsError('INVALID_LEAF', 'init_key equals encryption_key');
  }
  // RFC 9420 §7.2/§7.3: a leaf must advertise what it itself uses, or a group would admit a
  // member that cannot process its own credential or suite.
  if (!leaf.capabilities.credentials.includes('basic')) {
    throw new MlsError('INVALID_LEAF', 'capabilities omit its own credential type');
  }
  if (!leaf.capabilities.ciphersuites.some((name) => ciphersuiteId(name) === ciphersuite)) {
    throw new MlsError('INVALID_LEAF', 'capabilities omit its own ciphersuite');
  }
  if (!extensionsSupportedByCapabilities(leaf.extensions, leaf.capabilities)) {
    throw new MlsError('INVALID_LEAF', 'leaf extension not listed in capabilities');
  }
  return leaf.credential.identity;
}

async function checkSignatures(keyPackage: KeyPackage, impl: CiphersuiteImpl): Promise<void> {
  // The leaf signature first: a tampered leaf breaks both, and naming the leaf is the more
  // precise diagnosis.
  if (
    !(await verifies(() => verifyLeafNodeSignatureKeyPackage(keyPackage.leafNode, impl.signature)))
  ) {
    throw new MlsError('BAD_LEAF_SIGNATURE', 'LeafNodeTBS signature does not verify');
  }
  if (!(await verifies(() => verifyKeyPackage(keyPackage, impl.signature)))) {
    throw new MlsError('BAD_SIGNATURE', 'KeyPackageTBS signature does not verify');
  }
}

function checkPolicy(policy: KeyPackagePolicy): void {
  // A broken policy is a server bug, not a bad key package: fail loudly with a different type.
  const fine = (n: number) => Number.isFinite(n) && n >= 0;
  if (
    !fine(policy.now.getTime()) ||
    !fine(policy.clockSkewSeconds) ||
    !fine(policy.maxLifetimeSeconds)
  ) {
    throw new TypeError('invalid KeyPackagePolicy');
  }
}

function checkLifetime(
  keyPackage: KeyPackage,
  policy: KeyPackagePolicy,
): { notBefore: Date; notAfter: Date } {
  const { notBefore, notAfter } = keyPackage.leafNode.lifetime;
  const now = BigInt(Math.floor(policy.now.getTime() / 1000));
  const skew = BigInt(Math.ceil(policy.clockSkewSeconds));
  const maxLifetime = BigInt(Math.floor(policy.maxLifetimeSeconds));
  if (notAfter < notBefore) throw new MlsError('INVALID_LEAF', 'lifetime ends before it begins');
  if (notBefore > now + skew) throw new MlsError('NOT_YET_VALID', 'lifetime starts in the future');
  if (notAfter < now - skew) throw new MlsError('EXPIRED', 'lifetime has ended');
  // A key package valid "forever" (ts-mls's default lifetime is 0..2^63-1) would outlive
  // every rotation policy; bound it so stolen init keys age out.
  if (notAfter - notBefore > maxLifetime + skew) {
    throw new MlsError('LIFETIME_TOO_LONG', `lifetime exceeds ${maxLifetime} seconds`);
  }
  // Both bounds are now within a few policy lifetimes of `now`, so they fit a Date.
  return {
    notBefore: new Date(Number(notBefore) * 1000),
    notAfter: new Date(Number(notAfter) * 1000),
  };
}

/** Decodes an MLSMessage(key_package) and validates it fully (RFC 9420 §10.1 + lifetime policy). Throws MlsError. */
export async function validateKeyPackage(
  message: Uint8Array,
  policy: KeyPackagePolicy,
): Promise<ValidatedKeyPackage> {
  checkPolicy(policy);
  const maxBytes = resolveMaxBytes(policy.maxBytes, DEFAULT_MAX_KEY_PACKAGE_BYTES);
  try {
    return await validate(message, policy, maxBytes);
  } catch (error) {
    throw asMlsError(error, 'DECODE');
  }
}

async function validate(
  message: Uint8Array,
  policy: KeyPackagePolicy,
  maxBytes: number,
): Promise<ValidatedKeyPackage> {
  const keyPackage = decodeKeyPackageMessage(message, maxBytes);
  const ciphersuite = ciphersuiteId(keyPackage.cipherSuite);
  if (!policy.supportedCiphersuites.includes(ciphersuite) || !isSupportedCiphersuite(ciphersuite)) {
    throw new MlsError('UNSUPPORTED_CIPHERSUITE', `ciphersuite ${ciphersuite}`);
  }
  const identity = checkLeafShape(keyPackage, ciphersuite);
  const impl = await ciphersuiteImpl(ciphersuite);
  await checkSignatures(keyPackage, impl);
  const lifetime = checkLifetime(keyPackage, policy);
  // Hash the bytes as received, not a re-encoding: the ref must be what the client computes.
  const ref = await keyPackageRef(ciphersuite, message.subarray(MLS_MESSAGE_HEADER_BYTES));
  return {
    ciphersuite,
    ref,
    identity: copyBytes(identity),
    signatureKey: copyBytes(keyPackage.leafNode.signaturePublicKey),
    notBefore: lifetime.notBefore,
    notAfter: lifetime.notAfter,
    // ts-mls has names only for RFC 9420's types and decodes others (last_resort) as numbers.
    extensionTypes: keyPackage.extensions.map((extension) =>
      extensionTypeToNumber(extension.extensionType),
    ),
  };
}
