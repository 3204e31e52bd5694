import type { Credential, KeyPackage, LeafNode } from 'ts-mls';
import { makeKeyPackageRef, signKeyPackage } from 'ts-mls/keyPackage.js';
import { signLeafNodeKeyPackage } from 'ts-mls/leafNode.js';
import { describe, expect, it } from 'vitest';

import {
  MlsError,
  SUPPORTED_CIPHERSUITES,
  refHash,
  validateKeyPackage,
  type KeyPackagePolicy,
  type MlsErrorReason,
} from './index.js';
import {
  concat,
  cryptoBasicsVectors,
  hex,
  keyPackageMessage,
  makeKeyPackage,
  messageVectors,
} from './spec-support.js';

const NOW = new Date('2026-06-01T12:00:00Z');
const NOW_S = Math.floor(NOW.getTime() / 1000);
const DAY = 24 * 3600;

const policy: KeyPackagePolicy = {
  supportedCiphersuites: [1, 2, 3],
  maxLifetimeSeconds: 90 * DAY,
  now: NOW,
  clockSkewSeconds: 60,
};

const validLifetime = { notBefore: NOW_S - 3600, notAfter: NOW_S + 30 * DAY };

async function reasonOf(run: () => Promise<unknown>): Promise<MlsErrorReason | 'NO_ERROR'> {
  try {
    await run();
    return 'NO_ERROR';
  } catch (error) {
    if (error instanceof MlsError) return error.reason;
    throw error;
  }
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(haystack).indexOf(Buffer.from(needle));
}

describe('validateKeyPackage accepts real key packages', () => {
  for (const suite of SUPPORTED_CIPHERSUITES) {
    it(`accepts a ts-mls key package of ciphersuite ${suite} and reports its facts`, async () => {
      const client = await makeKeyPackage(suite, validLifetime);
      const result = await validateKeyPackage(client.bytes, {
        ...policy,
        supportedCiphersuites: SUPPORTED_CIPHERSUITES,
      });
      expect(result.ciphersuite).toBe(suite);
      // ts-mls computes the ref over its own re-encoding; ours hashes the received bytes.
      expect(result.ref).toEqual(await makeKeyPackageRef(client.keyPackage, client.impl.hash));
      expect(result.identity).toEqual(client.identity);
      expect(result.signatureKey).toEqual(
        new Uint8Array(client.keyPackage.leafNode.signaturePublicKey),
      );
      expect(result.notBefore).toEqual(new Date(validLifetime.notBefore * 1000));
      expect(result.notAfter).toEqual(new Date(validLifetime.notAfter * 1000));
      expect(result.extensionTypes).toEqual([]);
    });
  }

  it('accepts the 300 key packages of messages.json (mlspp, suites 1-3) inside their lifetime', async () => {
    const vectors = messageVectors();
    const suites = new Set<number>();
    for (const vector of vectors) {
      const result = await validateKeyPackage(hex(vector.mls_key_package ?? ''), {
        ...policy,
        now: new Date('2023-04-01T00:00:00Z'),
      });
      suites.add(result.ciphersuite);
      expect(result.ref).toHaveLength(32);
    }
    expect([...suites].sort()).toEqual([1, 2, 3]);
  });

  it('reports the key package extensions by number, in wire order (last_resort is 0x000A)', async () => {
    const client = await makeKeyPackage(1, {
      ...validLifetime,
      extensions: [
        { extensionType: 0x000a, extensionData: new Uint8Array() },
        { extensionType: 0xff00, extensionData: new Uint8Array([1, 2, 3]) },
      ],
    });
    expect((await validateKeyPackage(client.bytes, policy)).extensionTypes).toEqual([
      0x000a, 0xff00,
    ]);
  });

  it('accepts a lifetime that starts within the clock skew', async () => {
    const client = await makeKeyPackage(1, { notBefore: NOW_S + 30, notAfter: NOW_S + DAY });
    expect(await reasonOf(() => validateKeyPackage(client.bytes, policy))).toBe('NO_ERROR');
  });

  it('returns copies, not views into the caller buffer', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const input = Buffer.from(client.bytes);
    const result = await validateKeyPackage(input, policy);
    const identity = Uint8Array.from(result.identity);
    input.fill(0);
    expect(result.identity).toEqual(identity);
    expect(result.identity.buffer).not.toBe(input.buffer);
  });
});

describe('RefHash', () => {
  const cases = cryptoBasicsVectors();

  it('has a ref_hash vector for every supported ciphersuite', () => {
    expect(cases.map((c) => c.cipher_suite).sort()).toEqual([...SUPPORTED_CIPHERSUITES]);
  });

  for (const vector of cases) {
    it(`matches crypto-basics.json for ciphersuite ${vector.cipher_suite}`, async () => {
      const { label, value, out } = vector.ref_hash;
      expect(await refHash(vector.cipher_suite, label, hex(value))).toEqual(hex(out));
    });
  }
});

describe('validateKeyPackage rejects', () => {
  it('a tampered KeyPackage signature with BAD_SIGNATURE', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const bytes = client.bytes.slice();
    // The KeyPackage signature is the last field of the message.
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x01;
    expect(await reasonOf(() => validateKeyPackage(bytes, policy))).toBe('BAD_SIGNATURE');
  });

  it('a tampered init_key with BAD_SIGNATURE (the leaf is intact)', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const bytes = client.bytes.slice();
    const at = indexOf(bytes, client.keyPackage.initKey);
    bytes[at] = (bytes[at] ?? 0) ^ 0x01;
    expect(await reasonOf(() => validateKeyPackage(bytes, policy))).toBe('BAD_SIGNATURE');
  });

  it('a tampered leaf node (identity) with BAD_LEAF_SIGNATURE', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const bytes = client.bytes.slice();
    const at = indexOf(bytes, client.identity);
    expect(at).toBeGreaterThan(0);
    bytes[at] = (bytes[at] ?? 0) ^ 0x01;
    expect(await reasonOf(() => validateKeyPackage(bytes, policy))).toBe('BAD_LEAF_SIGNATURE');
  });

  it('an expired key package with EXPIRED', async () => {
    const client = await makeKeyPackage(1, { notBefore: NOW_S - 2 * DAY, notAfter: NOW_S - DAY });
    expect(await reasonOf(() => validateKeyPackage(client.bytes, policy))).toBe('EXPIRED');
  });

  it('a key package that ended just beyond the clock skew with EXPIRED', async () => {
    const client = await makeKeyPackage(1, { notBefore: NOW_S - DAY, notAfter: NOW_S - 61 });
    expect(await reasonOf(() => validateKeyPackage(client.bytes, policy))).toBe('EXPIRED');
  });

  it('a key package not valid yet with NOT_YET_VALID', async () => {
    const client = await makeKeyPackage(1, { notBefore: NOW_S + 3600, notAfter: NOW_S + DAY });
    expect(await reasonOf(() => validateKeyPackage(client.bytes, policy))).toBe('NOT_YET_VALID');
  });

  it('a lifetime longer than the policy with LIFETIME_TOO_LONG', async () => {
    const client = await makeKeyPackage(1, { notBefore: NOW_S - DAY, notAfter: NOW_S + 100 * DAY });
    expect(await reasonOf(() => validateKeyPackage(client.bytes, policy))).toBe(
      'LIFETIME_TOO_LONG',
    );
  });

  it("ts-mls's default everlasting lifetime with LIFETIME_TOO_LONG", async () => {
    const client = await makeKeyPackage(1, { notBefore: 0, notAfter: 2 ** 63 - 1 });
    expect(await reasonOf(() => validateKeyPackage(client.bytes, policy))).toBe(
      'LIFETIME_TOO_LONG',
    );
  });

  it('a lifetime that ends before it begins with INVALID_LEAF', async () => {
    const client = await makeKeyPackage(1, { notBefore: NOW_S + 30, notAfter: NOW_S - 30 });
    expect(await reasonOf(() => validateKeyPackage(client.bytes, policy))).toBe('INVALID_LEAF');
  });

  it('a ciphersuite outside the policy with UNSUPPORTED_CIPHERSUITE', async () => {
    const client = await makeKeyPackage(3, validLifetime);
    const narrow = { ...policy, supportedCiphersuites: [1, 2] };
    expect(await reasonOf(() => validateKeyPackage(client.bytes, narrow))).toBe(
      'UNSUPPORTED_CIPHERSUITE',
    );
  });

  it('a ciphersuite unknown to the library with UNSUPPORTED_CIPHERSUITE', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const bytes = client.bytes.slice();
    // MLSMessage header (4) then KeyPackage.version (2) then cipher_suite.
    bytes[6] = 0x12;
    bytes[7] = 0x34;
    const open = { ...policy, supportedCiphersuites: [0x1234] };
    expect(await reasonOf(() => validateKeyPackage(bytes, open))).toBe('UNSUPPORTED_CIPHERSUITE');
  });

  it('a KeyPackage of another protocol version with UNSUPPORTED_VERSION', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const bytes = client.bytes.slice();
    bytes[5] = 2;
    expect(await reasonOf(() => validateKeyPackage(bytes, policy))).toBe('UNSUPPORTED_VERSION');
  });

  it('an x509 credential with UNSUPPORTED_CREDENTIAL', async () => {
    const client = await makeKeyPackage(1, {
      ...validLifetime,
      credential: { credentialType: 'x509', certificates: [new Uint8Array([1, 2, 3])] },
    });
    expect(await reasonOf(() => validateKeyPackage(client.bytes, policy))).toBe(
      'UNSUPPORTED_CREDENTIAL',
    );
  });

  it('a credential type ts-mls cannot decode (here 0x0A0A) with DECODE, not a TypeError', async () => {
    // ts-mls encodes custom credentials but its decoder has no branch for them and calls
    // undefined as a decoder; the library maps that TypeError to DECODE.
    const custom = { credentialType: '2570', data: new Uint8Array([1, 2, 3]) };
    const client = await makeKeyPackage(1, {
      ...validLifetime,
      credential: custom as unknown as Credential,
    });
    expect(await reasonOf(() => validateKeyPackage(client.bytes, policy))).toBe('DECODE');
  });

  it('init_key equal to encryption_key with INVALID_LEAF, even when properly signed', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const signKey = client.privatePackage.signaturePrivateKey;
    const signature = client.impl.signature;
    const leafNode = await signLeafNodeKeyPackage(client.keyPackage.leafNode, signKey, signature);
    const keyPackage = await signKeyPackage(
      { ...client.keyPackage, leafNode, initKey: leafNode.hpkePublicKey },
      signKey,
      signature,
    );
    expect(await reasonOf(() => validateKeyPackage(keyPackageMessage(keyPackage), policy))).toBe(
      'INVALID_LEAF',
    );
  });

  it('a leaf node from a commit with INVALID_LEAF', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const leafNode = {
      ...client.keyPackage.leafNode,
      leafNodeSource: 'commit',
      parentHash: new Uint8Array(32),
    } as LeafNode;
    const keyPackage = { ...client.keyPackage, leafNode } as KeyPackage;
    expect(await reasonOf(() => validateKeyPackage(keyPackageMessage(keyPackage), policy))).toBe(
      'INVALID_LEAF',
    );
  });

  it('garbage with DECODE', async () => {
    const garbage = concat(new Uint8Array([0, 1, 0, 5]), new Uint8Array(40).fill(0xff));
    expect(await reasonOf(() => validateKeyPackage(garbage, policy))).toBe('DECODE');
    expect(await reasonOf(() => validateKeyPackage(new Uint8Array(), policy))).toBe('DECODE');
  });

  it('trailing bytes with TRAILING_BYTES', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const padded = concat(client.bytes, new Uint8Array([0]));
    expect(await reasonOf(() => validateKeyPackage(padded, policy))).toBe('TRAILING_BYTES');
  });

  it('another wire format with WRONG_WIRE_FORMAT', async () => {
    const [vector] = messageVectors();
    const welcome = hex(vector?.mls_welcome ?? '');
    expect(await reasonOf(() => validateKeyPackage(welcome, policy))).toBe('WRONG_WIRE_FORMAT');
  });

  it('input over the size limit with TOO_LARGE', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const tight = { ...policy, maxBytes: client.bytes.length - 1 };
    expect(await reasonOf(() => validateKeyPackage(client.bytes, tight))).toBe('TOO_LARGE');
  });

  it('a broken policy with a TypeError, not an MlsError', async () => {
    const client = await makeKeyPackage(1, validLifetime);
    const broken = { ...policy, now: new Date(Number.NaN) };
    await expect(validateKeyPackage(client.bytes, broken)).rejects.toBeInstanceOf(TypeError);
  });
});
