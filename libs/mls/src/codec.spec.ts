import { describe, expect, it } from 'vitest';

import {
  DEFAULT_MAX_MESSAGE_BYTES,
  MlsError,
  decodeMessage,
  encodeMessage,
  inspectCommit,
  inspectMessage,
  inspectWelcome,
  validateKeyPackage,
  verifyGroupInfo,
  type MlsErrorReason,
} from './index.js';
import { concat, hex, randomBytes, messageVectors, seededRandom } from './spec-support.js';

const vectors = messageVectors();

// Every MLSMessage-typed field of messages.json; the others are bare structs.
const MESSAGE_FIELDS = [
  'mls_key_package',
  'mls_welcome',
  'mls_group_info',
  'public_message_application',
  'public_message_proposal',
  'public_message_commit',
  'private_message',
] as const;

const policy = {
  supportedCiphersuites: [1, 2, 3],
  maxLifetimeSeconds: 90 * 24 * 3600,
  now: new Date('2030-01-01T00:00:00Z'),
  clockSkewSeconds: 300,
};

function reasonOf(run: () => unknown): MlsErrorReason | 'NO_ERROR' | 'FOREIGN_ERROR' {
  try {
    run();
    return 'NO_ERROR';
  } catch (error) {
    return error instanceof MlsError ? error.reason : 'FOREIGN_ERROR';
  }
}

async function asyncReasonOf(
  run: () => Promise<unknown>,
): Promise<MlsErrorReason | 'NO_ERROR' | 'FOREIGN_ERROR'> {
  try {
    await run();
    return 'NO_ERROR';
  } catch (error) {
    return error instanceof MlsError ? error.reason : 'FOREIGN_ERROR';
  }
}

/** Every decoder the library has; each must reject or accept, never throw anything else. */
async function everyDecoder(bytes: Uint8Array): Promise<string[]> {
  const outcomes = [
    reasonOf(() => decodeMessage(bytes)),
    reasonOf(() => inspectMessage(bytes)),
    reasonOf(() => inspectWelcome(bytes)),
    await asyncReasonOf(() => inspectCommit(bytes)),
    await asyncReasonOf(() => verifyGroupInfo(bytes)),
    await asyncReasonOf(() => validateKeyPackage(bytes, policy)),
  ];
  return outcomes.filter((outcome) => outcome === 'FOREIGN_ERROR');
}

describe('conformance: messages.json round-trips through decodeMessage/encodeMessage', () => {
  it('has the 300 cases the design promises', () => {
    expect(vectors).toHaveLength(300);
  });

  for (const field of MESSAGE_FIELDS) {
    it(`re-encodes every ${field} to the same bytes`, () => {
      const mismatches: number[] = [];
      for (const [index, vector] of vectors.entries()) {
        const bytes = hex(vector[field] ?? '');
        const reencoded = encodeMessage(decodeMessage(bytes));
        if (Buffer.compare(Buffer.from(reencoded), Buffer.from(bytes)) !== 0)
          mismatches.push(index);
      }
      // No case is a known ts-mls limitation: all 2100 messages round-trip exactly.
      expect(mismatches).toEqual([]);
    });
  }

  it('inspects every vector message with the wire format its field names', () => {
    const expected: Record<(typeof MESSAGE_FIELDS)[number], string> = {
      mls_key_package: 'key_package',
      mls_welcome: 'welcome',
      mls_group_info: 'group_info',
      public_message_application: 'public_message',
      public_message_proposal: 'public_message',
      public_message_commit: 'public_message',
      private_message: 'private_message',
    };
    for (const vector of vectors) {
      for (const field of MESSAGE_FIELDS) {
        const inspected = inspectMessage(hex(vector[field] ?? ''));
        expect(inspected.wireFormat).toBe(expected[field]);
        if (inspected.wireFormat === 'public_message') {
          expect(inspected.contentType).toBe(field.replace('public_message_', ''));
        }
      }
    }
  });

  it('verifies every mlspp GroupInfo of the vectors, parent hashes included', async () => {
    for (const vector of vectors) {
      const verified = await verifyGroupInfo(hex(vector.mls_group_info ?? ''), {
        verifyParentHashes: true,
      });
      expect(verified.leaves.length).toBeGreaterThan(0);
      expect([1, 2, 3]).toContain(verified.ciphersuite);
    }
  });

  it('inspects every vector commit and welcome without error', async () => {
    for (const vector of vectors) {
      const commit = await inspectCommit(hex(vector.public_message_commit ?? ''));
      expect(commit.proposals.length + commit.proposalRefs.length).toBeGreaterThanOrEqual(0);
      const welcome = inspectWelcome(hex(vector.mls_welcome ?? ''));
      expect(welcome.keyPackageRefs.length).toBeGreaterThan(0);
    }
  });
});

describe('robustness', () => {
  const samples = vectors
    .slice(0, 3)
    .flatMap((vector) =>
      MESSAGE_FIELDS.map((field) => ({ field, bytes: hex(vector[field] ?? '') })),
    );

  it('rejects every proper prefix of real messages with MlsError', () => {
    for (const { field, bytes } of samples) {
      for (let length = 0; length < bytes.length; length++) {
        const reason = reasonOf(() => decodeMessage(bytes.subarray(0, length)));
        if (reason === 'NO_ERROR' || reason === 'FOREIGN_ERROR') {
          throw new Error(`${field} prefix of ${length} bytes: ${reason}`);
        }
      }
    }
  });

  it('rejects truncated messages in every decoder without a foreign error', async () => {
    for (const { bytes } of samples.slice(0, 7)) {
      for (let length = 0; length < bytes.length; length += 7) {
        expect(await everyDecoder(bytes.subarray(0, length))).toEqual([]);
      }
    }
  });

  it('rejects a trailing byte after any message with TRAILING_BYTES', () => {
    for (const { bytes } of samples) {
      expect(reasonOf(() => decodeMessage(concat(bytes, new Uint8Array([0]))))).toBe(
        'TRAILING_BYTES',
      );
      expect(reasonOf(() => inspectMessage(concat(bytes, new Uint8Array([1, 2]))))).toBe(
        'TRAILING_BYTES',
      );
    }
  });

  it('rejects oversized input with TOO_LARGE before parsing', async () => {
    const [sample] = samples;
    if (sample === undefined) throw new Error('no sample');
    expect(reasonOf(() => decodeMessage(sample.bytes, { maxBytes: sample.bytes.length - 1 }))).toBe(
      'TOO_LARGE',
    );
    expect(reasonOf(() => decodeMessage(sample.bytes, { maxBytes: sample.bytes.length }))).toBe(
      'NO_ERROR',
    );
    const huge = new Uint8Array(DEFAULT_MAX_MESSAGE_BYTES + 1);
    expect(reasonOf(() => decodeMessage(huge))).toBe('TOO_LARGE');
    expect(reasonOf(() => inspectMessage(huge))).toBe('TOO_LARGE');
    expect(reasonOf(() => inspectWelcome(huge))).toBe('TOO_LARGE');
    expect(await asyncReasonOf(() => inspectCommit(huge))).toBe('TOO_LARGE');
    expect(await asyncReasonOf(() => verifyGroupInfo(huge))).toBe('TOO_LARGE');
    expect(await asyncReasonOf(() => validateKeyPackage(huge, policy))).toBe('TOO_LARGE');
  });

  it('refuses a list too long for ts-mls to re-encode with TOO_LARGE, not a stack overflow', () => {
    // A Welcome (suite 1) with 45,000 EncryptedGroupSecrets of 32+32+16 bytes: 3.7 MB.
    const entry = concat(
      new Uint8Array([32]),
      new Uint8Array(32).fill(7),
      new Uint8Array([32]),
      new Uint8Array(32),
      new Uint8Array([16]),
      new Uint8Array(16),
    );
    const count = 45_000;
    const secrets = new Uint8Array(entry.length * count);
    for (let i = 0; i < count; i++) secrets.set(entry, i * entry.length);
    const length = secrets.length;
    const prefix = new Uint8Array([
      0x80 | (length >>> 24),
      (length >>> 16) & 0xff,
      (length >>> 8) & 0xff,
      length & 0xff,
    ]);
    const welcome = concat(
      new Uint8Array([0, 1, 0, 3, 0, 1]),
      prefix,
      secrets,
      new Uint8Array([0]),
    );
    expect(welcome.length).toBeLessThan(DEFAULT_MAX_MESSAGE_BYTES);
    expect(reasonOf(() => inspectWelcome(welcome))).toBe('TOO_LARGE');
  });

  it('names header problems precisely', () => {
    const [sample] = samples;
    if (sample === undefined) throw new Error('no sample');
    const otherVersion = sample.bytes.slice();
    otherVersion[1] = 2;
    expect(reasonOf(() => decodeMessage(otherVersion))).toBe('UNSUPPORTED_VERSION');
    const unknownWireFormat = sample.bytes.slice();
    unknownWireFormat[3] = 9;
    expect(reasonOf(() => decodeMessage(unknownWireFormat))).toBe('DECODE');
    expect(reasonOf(() => inspectWelcome(sample.bytes))).toBe('WRONG_WIRE_FORMAT');
  });

  it('rejects a non-minimal length prefix that ts-mls alone would accept', () => {
    // KeyPackage: header(4) version(2) suite(2), then init_key<V> with a one-byte length.
    const bytes = hex(vectors[0]?.mls_key_package ?? '');
    const length = bytes[8] ?? 0;
    expect(length).toBeLessThan(64);
    const padded = concat(bytes.subarray(0, 8), new Uint8Array([0x40, length]), bytes.subarray(9));
    expect(reasonOf(() => decodeMessage(padded))).toBe('NON_CANONICAL');
  });

  it('survives seeded random garbage in every decoder', async () => {
    const next = seededRandom(0x9a7e);
    const foreign: string[] = [];
    for (let round = 0; round < 400; round++) {
      const body = randomBytes(next, Math.floor(next() * 600));
      // Half the inputs carry a valid header so the body parsers get exercised too.
      const header = new Uint8Array([0, 1, 0, 1 + Math.floor(next() * 5)]);
      const bytes = round % 2 === 0 ? body : concat(header, body);
      foreign.push(...(await everyDecoder(bytes)));
    }
    expect(foreign).toEqual([]);
  });

  it('survives seeded mutations of real messages in every decoder', async () => {
    const next = seededRandom(0x5eed);
    const foreign: string[] = [];
    for (let round = 0; round < 600; round++) {
      const sample = samples[round % samples.length];
      if (sample === undefined) continue;
      const bytes = sample.bytes.slice();
      const flips = 1 + Math.floor(next() * 4);
      for (let i = 0; i < flips; i++) {
        bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
      }
      foreign.push(...(await everyDecoder(bytes)));
    }
    expect(foreign).toEqual([]);
  });

  it('treats a broken size limit as a programming error (TypeError), not bad input', async () => {
    const [sample] = samples;
    if (sample === undefined) throw new Error('no sample');
    expect(() => decodeMessage(sample.bytes, { maxBytes: Number.NaN })).toThrow(TypeError);
    await expect(inspectCommit(sample.bytes, { maxBytes: -1 })).rejects.toBeInstanceOf(TypeError);
    await expect(verifyGroupInfo(sample.bytes, { maxBytes: -1 })).rejects.toBeInstanceOf(TypeError);
  });

  it('refuses input that is not a byte array', () => {
    expect(reasonOf(() => decodeMessage('0001' as unknown as Uint8Array))).toBe('DECODE');
  });
});
