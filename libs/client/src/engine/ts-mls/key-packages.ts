/**
 * The key packages of the ts-mls engine. ts-mls's defaults do not suit Parley and are replaced
 * here: a real lifetime (ts-mls's runs to 2^63, which the delivery service rejects as absurd) and
 * fixed capabilities (ts-mls's defaults add random GREASE values) that declare last_resort and
 * the credential types OpenMLS clients require.
 */
import { LAST_RESORT_EXTENSION_TYPE, toHex } from '@parley/protocol';
import {
  encodeMlsMessage,
  generateKeyPackageWithKey,
  type Capabilities,
  type CiphersuiteImpl,
  type CiphersuiteName,
  type Extension,
  type KeyPackage,
  type PrivateKeyPackage,
} from 'ts-mls';
// Not re-exported from the package root; reachable through its "./*.js" export map.
import { makeKeyPackageRef } from 'ts-mls/keyPackage.js';

/** Default key-package lifetime: from one hour ago (clock skew) to 30 days ahead. */
export const DEFAULT_KEY_PACKAGE_LIFETIME = Object.freeze({
  beforeSeconds: 60 * 60,
  afterSeconds: 30 * 24 * 60 * 60,
});

/**
 * Credential types every leaf of this engine declares it supports. Parley's own credentials are
 * basic only, but a group created by core-crypto (OpenMLS) carries a required_capabilities
 * extension listing basic and x509, and OpenMLS refuses to add a key package whose leaf does not
 * declare both ("Credentials are not acceptable", RFC 9420 §11.1). ts-mls decodes x509
 * credentials and checks their leaves' signatures like any other; no x509 member can arrive
 * through Parley anyway, since the delivery service accepts basic-credential key packages only.
 */
export const SUPPORTED_CREDENTIAL_TYPES = Object.freeze(['basic', 'x509'] as const);

/**
 * How long the private keys of an unused key package are kept after it expires: a Welcome for
 * a package claimed just before expiry may still be on its way to an offline device.
 */
const EXPIRED_KEY_PACKAGE_GRACE_SECONDS = 14n * 24n * 60n * 60n;

/** A signature key pair, as ts-mls makes and takes it. */
export interface SignatureKeyPair {
  signKey: Uint8Array;
  publicKey: Uint8Array;
}

/** A key package handed out, with the private keys a Welcome to it needs. */
export interface HeldKeyPackage {
  ref: Uint8Array;
  keyPackage: KeyPackage;
  privateKeyPackage: PrivateKeyPackage;
  lastResort: boolean;
}

/** Who makes key packages, with which keys and lifetime. */
export interface KeyPackageMaker {
  identity: string;
  suite: CiphersuiteName;
  cs: CiphersuiteImpl;
  signatureKeyPair: SignatureKeyPair;
  lifetime: { beforeSeconds: number; afterSeconds: number };
}

const utf8 = new TextEncoder();

function nowSeconds(): bigint {
  return BigInt(Math.floor(Date.now() / 1000));
}

/** A new key package and its private keys (last-resort if asked). */
export async function newKeyPackage(
  maker: KeyPackageMaker,
  lastResort: boolean,
): Promise<{ keyPackage: KeyPackage; privateKeyPackage: PrivateKeyPackage }> {
  const now = nowSeconds();
  const lifetime = {
    notBefore: now - BigInt(maker.lifetime.beforeSeconds),
    notAfter: now + BigInt(maker.lifetime.afterSeconds),
  };
  // Fixed capabilities keep the encoding deterministic. last_resort is a non-default extension,
  // so the leaf declares it (RFC 9420 §7.2: a leaf lists the non-default extensions it supports;
  // OpenMLS checks this). The same capabilities become the leaf of a group this engine creates,
  // and every leaf of its commits' UpdatePaths (ts-mls copies them from the old leaf).
  const capabilities: Capabilities = {
    versions: ['mls10'],
    ciphersuites: [maker.suite],
    extensions: [LAST_RESORT_EXTENSION_TYPE],
    proposals: [],
    credentials: [...SUPPORTED_CREDENTIAL_TYPES],
  };
  // last_resort sits in KeyPackage.extensions (not the leaf node's), with empty data.
  const extensions: Extension[] = lastResort
    ? [{ extensionType: LAST_RESORT_EXTENSION_TYPE, extensionData: new Uint8Array() }]
    : [];
  const { publicPackage, privatePackage } = await generateKeyPackageWithKey(
    { credentialType: 'basic', identity: utf8.encode(maker.identity) },
    capabilities,
    lifetime,
    extensions,
    maker.signatureKeyPair,
    maker.cs,
  );
  return { keyPackage: publicPackage, privateKeyPackage: privatePackage };
}

/** A new key package to hand out: what to keep (by hex ref) and the MLSMessage to upload. */
export async function keyPackageToHold(
  maker: KeyPackageMaker,
  lastResort: boolean,
): Promise<{ key: string; held: HeldKeyPackage; message: Uint8Array }> {
  const { keyPackage, privateKeyPackage } = await newKeyPackage(maker, lastResort);
  const ref = await makeKeyPackageRef(keyPackage, maker.cs.hash);
  return {
    key: toHex(ref),
    held: { ref, keyPackage, privateKeyPackage, lastResort },
    message: encodeMlsMessage({ version: 'mls10', wireformat: 'mls_key_package', keyPackage }),
  };
}

/** Forgets (and zeroes the private keys of) held key packages expired past the grace period. */
export function forgetExpiredKeyPackages(held: Map<string, HeldKeyPackage>): void {
  const cutoff = nowSeconds() - EXPIRED_KEY_PACKAGE_GRACE_SECONDS;
  for (const [ref, entry] of held) {
    if (entry.keyPackage.leafNode.lifetime.notAfter < cutoff) {
      entry.privateKeyPackage.initPrivateKey.fill(0);
      entry.privateKeyPackage.hpkePrivateKey.fill(0);
      held.delete(ref);
    }
  }
}
