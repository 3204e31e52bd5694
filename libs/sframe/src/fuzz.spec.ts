import { describe, expect, it } from 'vitest';

import { SFrameReceiver, SFrameSender } from './context.js';
import { SFrameError } from './errors.js';
import { decodeHeader, encodeHeader } from './header.js';
import { CipherSuite } from './suites.js';

// mulberry32: a fixed seed, so that a failing input can be replayed.
function prng(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (below: number) => Math.floor(next() * below);
  const randomBytes = (length: number) => new Uint8Array(length).map(() => int(256));
  return { int, randomBytes };
}

const SEED = 0x5f4a3e;
const SUITES = Object.values(CipherSuite);
// Small KIDs (in the config byte) and long ones, so that random headers often name a held key.
const KIDS = [0n, 1n, 7n, 8n, 0x1234n, 0xffff_ffff_ffffn];
const baseKey = new Uint8Array(16).fill(0x42);

/** Runs `attempt` and returns what it threw: nothing, or an SFrameError; anything else fails. */
async function onlySFrameErrors(input: Uint8Array, attempt: () => Promise<unknown>) {
  try {
    await attempt();
    return 'accepted';
  } catch (error) {
    if (!(error instanceof SFrameError)) {
      throw new Error(`input ${Buffer.from(input).toString('hex')} threw ${String(error)}`, {
        cause: error,
      });
    }
    return error.code;
  }
}

describe(`fuzz (seed ${SEED})`, () => {
  it('decodeHeader: random bytes either fail with an SFrameError or re-encode to themselves', () => {
    const random = prng(SEED);
    for (let i = 0; i < 5000; i++) {
      const input = random.randomBytes(random.int(20));
      try {
        const header = decodeHeader(input);
        // The minimal encoding is the only one accepted, so decoding is one-to-one.
        expect(encodeHeader(header.kid, header.ctr)).toEqual(header.bytes);
      } catch (error) {
        expect(error).toBeInstanceOf(SFrameError);
      }
    }
  });

  it('decrypt: random byte strings and mutated valid frames throw only SFrameErrors', async () => {
    const random = prng(SEED + 1);
    const codes = new Map<string, number>();
    const count = (code: string) => codes.set(code, (codes.get(code) ?? 0) + 1);
    for (const suite of SUITES) {
      const receiver = new SFrameReceiver({ suite, replayWindow: 16 });
      for (const kid of KIDS) await receiver.addKey(kid, baseKey);
      const sender = await SFrameSender.create({ suite, kid: 0x1234, baseKey });
      const frames: Uint8Array[] = [];
      for (let i = 0; i < 20; i++) {
        frames.push(await sender.encrypt(random.randomBytes(random.int(64)), new Uint8Array([i])));
      }

      // 600 random byte strings per suite: 3000 in all.
      for (let i = 0; i < 600; i++) {
        const input = random.randomBytes(random.int(48));
        count(await onlySFrameErrors(input, () => receiver.decrypt(input)));
      }

      // 600 mutations of valid frames per suite: flips, truncations, insertions, splices.
      for (let i = 0; i < 600; i++) {
        const index = random.int(frames.length);
        const original = frames[index] ?? new Uint8Array();
        const input = original.slice();
        switch (random.int(4)) {
          case 0:
            for (let n = 1 + random.int(3); n > 0; n--) {
              const at = random.int(input.length);
              input[at] = (input[at] ?? 0) ^ (1 << random.int(8));
            }
            break;
          case 1:
            input.set(random.randomBytes(1), random.int(input.length));
            input[0] = (input[0] ?? 0) ^ 0x80;
            break;
          case 2: {
            const cut = random.int(input.length);
            count(await onlySFrameErrors(input, () => receiver.decrypt(input.subarray(0, cut))));
            continue;
          }
          default: {
            const at = random.int(input.length + 1);
            const grown = new Uint8Array([
              ...input.subarray(0, at),
              ...random.randomBytes(1 + random.int(4)),
              ...input.subarray(at),
            ]);
            count(await onlySFrameErrors(grown, () => receiver.decrypt(grown)));
            continue;
          }
        }
        // A flip can cancel itself out; only a changed frame must be refused.
        const unchanged = input.every((byte, at) => byte === original[at]);
        const code = await onlySFrameErrors(input, () =>
          receiver.decrypt(input, new Uint8Array([index])),
        );
        if (unchanged) continue;
        expect(code).not.toBe('accepted');
        count(code);
      }
    }
    // Each kind of rejection was reached, and nothing forged was ever accepted.
    expect(codes.get('accepted') ?? 0).toBe(0);
    for (const code of ['TRUNCATED_HEADER', 'MALFORMED_HEADER', 'UNKNOWN_KID']) {
      expect(codes.get(code), code).toBeGreaterThan(0);
    }
    for (const code of ['TRUNCATED_CIPHERTEXT', 'AUTHENTICATION_FAILED']) {
      expect(codes.get(code), code).toBeGreaterThan(0);
    }
  });
});
