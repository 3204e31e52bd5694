/** The RFC 9420 ciphersuites the ts-mls engine runs, and their ts-mls implementations. */
import {
  ciphersuites,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  type CiphersuiteImpl,
  type CiphersuiteName,
} from 'ts-mls';
import { TsMlsEngineError } from './errors.js';

// ts-mls builds a CiphersuiteImpl asynchronously (it may import optional peers); build each once.
const suiteImpls = new Map<CiphersuiteName, Promise<CiphersuiteImpl>>();

/** The ts-mls implementation of a suite, built once per process. */
export function suiteImpl(name: CiphersuiteName): Promise<CiphersuiteImpl> {
  let impl = suiteImpls.get(name);
  if (impl === undefined) {
    impl = getCiphersuiteImpl(getCiphersuiteFromName(name));
    suiteImpls.set(name, impl);
    // A failed build (a missing peer) must not be cached for good.
    impl.catch(() => suiteImpls.delete(name));
  }
  return impl;
}

/** ts-mls's name of an RFC 9420 suite 1–7; the post-quantum ones need peers Parley does not install. */
export function suiteName(id: number): CiphersuiteName {
  const entry = Object.entries(ciphersuites).find(([, value]) => value === id);
  if (entry === undefined || id < 1 || id > 7) {
    throw new TsMlsEngineError('UNSUPPORTED_CIPHERSUITE', `ciphersuite ${id} is not supported`);
  }
  return entry[0] as CiphersuiteName;
}
