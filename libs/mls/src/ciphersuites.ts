import {
  ciphersuites,
  defaultCryptoProvider,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  type CiphersuiteImpl,
  type CiphersuiteName,
} from 'ts-mls';
import { refhash } from 'ts-mls/crypto/hash.js';

import { MlsError, asMlsError } from './errors.js';

/**
 * Ciphersuites this library verifies: the seven of RFC 9420 §17.1. The post-quantum suites ts-mls
 * also knows need peers we do not install, and nobody in the MLS ecosystem deploys them yet.
 */
export const SUPPORTED_CIPHERSUITES: readonly number[] = Object.freeze([1, 2, 3, 4, 5, 6, 7]);

/** RFC 9420 names of the supported ciphersuites, by numeric id. */
export const CIPHERSUITE_NAMES: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(
    Object.entries(ciphersuites)
      .filter(([, id]) => SUPPORTED_CIPHERSUITES.includes(id))
      .map(([name, id]) => [id, name]),
  ),
);

const NAME_BY_ID = new Map<number, CiphersuiteName>(
  (Object.entries(ciphersuites) as [CiphersuiteName, number][])
    .filter(([, id]) => SUPPORTED_CIPHERSUITES.includes(id))
    .map(([name, id]) => [id, name]),
);

/**
 * ts-mls decodes cipher_suite as an open enum: known ids become names, unknown ones become the
 * id in decimal as a string. This turns either back into the wire number.
 */
export function ciphersuiteId(decoded: string): number {
  if (Object.hasOwn(ciphersuites, decoded)) return ciphersuites[decoded as CiphersuiteName];
  const id = Number(decoded);
  return Number.isInteger(id) ? id : -1;
}

/** Whether this library can verify objects of the given ciphersuite. */
export function isSupportedCiphersuite(id: number): boolean {
  return NAME_BY_ID.has(id);
}

// Building an impl imports optional peers and sets up HPKE; do it once per suite per process.
const implCache = new Map<number, Promise<CiphersuiteImpl>>();

/** Crypto for a supported ciphersuite from ts-mls's default provider, cached; throws UNSUPPORTED_CIPHERSUITE otherwise. */
export function ciphersuiteImpl(id: number): Promise<CiphersuiteImpl> {
  const cached = implCache.get(id);
  if (cached !== undefined) return cached;
  const name = NAME_BY_ID.get(id);
  if (name === undefined) {
    return Promise.reject(new MlsError('UNSUPPORTED_CIPHERSUITE', `ciphersuite ${id}`));
  }
  const pending = getCiphersuiteImpl(getCiphersuiteFromName(name), defaultCryptoProvider).catch(
    (error: unknown) => {
      // A missing optional peer must not poison the cache for the process lifetime silently.
      implCache.delete(id);
      throw asMlsError(error, 'UNSUPPORTED_CIPHERSUITE');
    },
  );
  implCache.set(id, pending);
  return pending;
}

/** RFC 9420 §5.2 RefHash(label, value) with the hash of the given ciphersuite. */
export async function refHash(
  ciphersuite: number,
  label: string,
  value: Uint8Array,
): Promise<Uint8Array> {
  const impl = await ciphersuiteImpl(ciphersuite);
  return refhash(label, value, impl.hash);
}

/** The KeyPackageRef (RFC 9420 §5.2) of a bare, already-encoded KeyPackage. */
export function keyPackageRef(ciphersuite: number, keyPackage: Uint8Array): Promise<Uint8Array> {
  return refHash(ciphersuite, 'MLS 1.0 KeyPackage Reference', keyPackage);
}
