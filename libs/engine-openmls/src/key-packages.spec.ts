import { MlsError, validateKeyPackage } from '@parley/mls';
import { LAST_RESORT_EXTENSION_TYPE } from '@parley/protocol';
import { describe, expect, it } from 'vitest';

import { DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS, createOpenMlsEngineFactory } from './index.js';
import { codeOf, hex, identity, policy, read } from './spec-support.js';

const factory = createOpenMlsEngineFactory();

describe('key packages of the OpenMLS engine', () => {
  it('pass Parley’s server-side validation: identity, signature key, lifetime, capabilities', async () => {
    const me = identity();
    const engine = await factory.create(me);
    expect(engine.name).toBe('openmls');
    expect(engine.ciphersuite).toBe(1);
    const signatureKey = await engine.signaturePublicKey();
    const keyPackages = await engine.generateKeyPackages(3);
    expect(keyPackages).toHaveLength(3);
    const refs = new Set<string>();
    for (const keyPackage of keyPackages) {
      // MLSMessage(key_package): version mls10, wire format 5.
      expect([...keyPackage.subarray(0, 4)]).toEqual([0, 1, 0, 5]);
      const validated = await validateKeyPackage(keyPackage, policy());
      expect(validated.ciphersuite).toBe(1);
      expect(read(validated.identity)).toBe(me);
      expect(hex(validated.signatureKey)).toBe(hex(signatureKey));
      const lifetime = (validated.notAfter.getTime() - validated.notBefore.getTime()) / 1000;
      expect(lifetime).toBe(DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS);
      // OpenMLS backdates not_before by an hour.
      expect(Date.now() - validated.notBefore.getTime()).toBeGreaterThanOrEqual(3_590_000);
      expect(validated.extensionTypes).not.toContain(LAST_RESORT_EXTENSION_TYPE);
      refs.add(hex(validated.ref));
    }
    expect(refs.size).toBe(3);
    expect(await engine.generateKeyPackages(0)).toEqual([]);
    await expect(engine.generateKeyPackages(-1)).rejects.toThrow(TypeError);
  });

  it('have the configured lifetime, and one over the server’s maximum is refused by it', async () => {
    const week = await createOpenMlsEngineFactory({ keyPackageLifetimeSeconds: 7 * 86_400 }).create(
      identity(),
    );
    const [short] = await week.generateKeyPackages(1);
    if (short === undefined) throw new Error('no key package');
    const validated = await validateKeyPackage(short, policy());
    expect((validated.notAfter.getTime() - validated.notBefore.getTime()) / 1000).toBe(7 * 86_400);

    const long = await createOpenMlsEngineFactory({
      keyPackageLifetimeSeconds: 120 * 86_400,
    }).create(identity());
    const [tooLong] = await long.generateKeyPackages(1);
    if (tooLong === undefined) throw new Error('no key package');
    await expect(validateKeyPackage(tooLong, policy())).rejects.toSatisfy(
      (error) => error instanceof MlsError && error.reason === 'LIFETIME_TOO_LONG',
    );
    expect(() => createOpenMlsEngineFactory({ keyPackageLifetimeSeconds: 3600 })).toThrow(
      TypeError,
    );
  });

  it('last resort: none, since core-crypto cannot mark one (the server refuses unmarked ones)', async () => {
    const engine = await factory.create(identity());
    expect(await engine.generateLastResortKeyPackage()).toBeNull();
  });

  it('work with the other ciphersuites core-crypto’s WebAssembly build supports', async () => {
    for (const ciphersuite of [2, 3, 5, 7]) {
      const engine = await factory.create(identity(), { ciphersuite });
      const [keyPackage] = await engine.generateKeyPackages(1);
      if (keyPackage === undefined) throw new Error('no key package');
      expect((await validateKeyPackage(keyPackage, policy([ciphersuite]))).ciphersuite).toBe(
        ciphersuite,
      );
    }
    expect(await codeOf(() => factory.create(identity(), { ciphersuite: 4 }))).toBe(
      'UNSUPPORTED_CIPHERSUITE',
    );
  });

  it('refuse identities core-crypto would spell differently', async () => {
    // core-crypto writes the device id without leading zeros; Parley's ids have exactly 16 digits.
    const leadingZero = `${identity().split(':')[0] ?? ''}:0123456789abcdef@parley.test`;
    expect(await codeOf(() => factory.create(leadingZero))).toBe('UNSUPPORTED_IDENTITY');
    expect(await codeOf(() => factory.create('alice@parley.test'))).toBe('UNSUPPORTED_IDENTITY');
  });
});
