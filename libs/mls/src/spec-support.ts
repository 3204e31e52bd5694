// Helpers for the specs only: excluded from the build (tsconfig.json) and never re-exported.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

import {
  ciphersuites,
  defaultCapabilities,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  type CiphersuiteImpl,
  type CiphersuiteName,
  type Credential,
  type Extension,
  type KeyPackage,
  type PrivateKeyPackage,
} from 'ts-mls';

/** One case of the MLS working group's messages.json (hex strings by field name). */
export type MessageVector = Record<string, string>;

function readMlsVectors(file: string): unknown {
  // The repository's copy (test/vectors/README.md names the source), so a fresh clone passes alone.
  const url = new URL(`../../../test/vectors/mls/${file}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8'));
}

/** The 300 cases of messages.json, read at run time. */
export function messageVectors(): MessageVector[] {
  return readMlsVectors('messages.json') as MessageVector[];
}

/** One case of crypto-basics.json, reduced to what the specs use. */
export interface CryptoBasicsVector {
  cipher_suite: number;
  ref_hash: { label: string; value: string; out: string };
}

/** The cases of crypto-basics.json, read at run time. */
export function cryptoBasicsVectors(): CryptoBasicsVector[] {
  return readMlsVectors('crypto-basics.json') as CryptoBasicsVector[];
}

/** Hex to bytes, for vectors. */
export function hex(value: string): Uint8Array {
  return new Uint8Array(Buffer.from(value, 'hex'));
}

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` bytes from a seeded generator. */
export function randomBytes(next: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(next() * 256);
  return bytes;
}

/** Concatenation of byte strings. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A key package as a client (here: ts-mls) makes it, with the pieces tests need. */
export interface ClientKeyPackage {
  bytes: Uint8Array;
  keyPackage: KeyPackage;
  privatePackage: PrivateKeyPackage;
  impl: CiphersuiteImpl;
  identity: Uint8Array;
}

const implCache = new Map<number, Promise<CiphersuiteImpl>>();

/** ts-mls's own ciphersuite implementation, independently of the library under test. */
export function clientImpl(suite: number): Promise<CiphersuiteImpl> {
  let impl = implCache.get(suite);
  if (impl === undefined) {
    const name = Object.entries(ciphersuites).find(([, id]) => id === suite)?.[0];
    if (name === undefined) throw new Error(`unknown suite ${suite}`);
    impl = getCiphersuiteImpl(getCiphersuiteFromName(name as CiphersuiteName));
    implCache.set(suite, impl);
  }
  return impl;
}

/** The Parley device identity form `<userUUID>:<deviceIdHex>@<domain>`. */
export function deviceIdentity(): Uint8Array {
  const device = Buffer.from(randomUUID().replaceAll('-', '').slice(0, 16), 'utf8').toString('hex');
  return new TextEncoder().encode(`${randomUUID()}:${device}@example.com`);
}

/** Wraps a KeyPackage in an MLSMessage, as clients upload it. */
export function keyPackageMessage(keyPackage: KeyPackage): Uint8Array {
  return encodeMlsMessage({ version: 'mls10', wireformat: 'mls_key_package', keyPackage });
}

/** Generates a real key package with ts-mls, with an explicit lifetime in Unix seconds. */
export async function makeKeyPackage(
  suite: number,
  options: {
    notBefore: number;
    notAfter: number;
    extensions?: Extension[];
    credential?: Credential;
  },
): Promise<ClientKeyPackage> {
  const impl = await clientImpl(suite);
  const identity = deviceIdentity();
  const credential: Credential = options.credential ?? { credentialType: 'basic', identity };
  const lifetime = { notBefore: BigInt(options.notBefore), notAfter: BigInt(options.notAfter) };
  const { publicPackage, privatePackage } = await generateKeyPackage(
    credential,
    defaultCapabilities(),
    lifetime,
    options.extensions ?? [],
    impl,
  );
  return {
    bytes: keyPackageMessage(publicPackage),
    keyPackage: publicPackage,
    privatePackage,
    impl,
    identity,
  };
}
