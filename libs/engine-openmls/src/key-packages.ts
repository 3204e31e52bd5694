/**
 * Key packages of the OpenMLS engine: core-crypto makes them bare, Parley wants each as an
 * MLSMessage(key_package); core-crypto takes the lifetime after its own backdating.
 */
import type { CoreCryptoContext, CredentialRef } from '@wireapp/core-crypto/browser';
import { wrapKeyPackage } from './wire.js';

/**
 * Default key-package lifetime, not_after − not_before: 90 days, Parley's default maximum.
 * (core-crypto's own default is 84 days after an hour's backdating.)
 */
export const DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS = 90 * 24 * 60 * 60;

/** OpenMLS backdates not_before by this much; core-crypto's lifetime argument is what follows. */
const NOT_BEFORE_MARGIN_SECONDS = 60 * 60;

/** Whether a lifetime (not_after − not_before, seconds) can be given to core-crypto. */
export function isKeyPackageLifetime(seconds: number): boolean {
  return Number.isSafeInteger(seconds) && seconds > NOT_BEFORE_MARGIN_SECONDS;
}

/** `count` new key packages of the credential, as MLSMessages, made in a core-crypto transaction. */
export async function generateKeyPackages(
  context: CoreCryptoContext,
  credential: CredentialRef,
  lifetimeSeconds: number,
  count: number,
): Promise<Uint8Array[]> {
  // core-crypto takes the lifetime after not_before's backdating, in milliseconds (a uniffi
  // Duration; its TypeScript type says only "number").
  const lifetimeMs = (lifetimeSeconds - NOT_BEFORE_MARGIN_SECONDS) * 1000;
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    out.push(
      wrapKeyPackage((await context.generateKeyPackage(credential, lifetimeMs)).serialize()),
    );
  }
  return out;
}
