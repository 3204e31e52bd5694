import { describe, expect, it } from 'vitest';

import { DEFAULT_REPLAY_WINDOW, ReplayWindow, SFrameReceiver, SFrameSender } from './context.js';
import { type SFrameErrorCode, SFrameError } from './errors.js';
import { MAX_UINT64, decodeHeader, encodeHeader } from './header.js';
import { CipherSuite, suiteParameters } from './suites.js';

const SUITES = Object.values(CipherSuite);
const bytes = (...values: number[]) => new Uint8Array(values);
const baseKey = (seed: number) => new Uint8Array(32).map((_, i) => (seed * 31 + i) & 0xff);
const text = (value: string) => new TextEncoder().encode(value);

async function failure(promise: Promise<unknown>): Promise<SFrameErrorCode> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(SFrameError);
    return (error as SFrameError).code;
  }
  throw new Error('expected an SFrameError, got success');
}

function syncFailure(run: () => unknown): SFrameErrorCode {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(SFrameError);
    return (error as SFrameError).code;
  }
  throw new Error('expected an SFrameError, got success');
}

async function pair(suite: number, kid: bigint | number = 0x1234, counter?: bigint) {
  const sender = await SFrameSender.create({ suite, kid, baseKey: baseKey(1), counter });
  const receiver = new SFrameReceiver({ suite });
  await receiver.addKey(kid, baseKey(1));
  return { sender, receiver };
}

describe('header', () => {
  it('round-trips KID and CTR at every byte length, in place at the front of a frame', () => {
    const values = [0n, 1n, 7n, 8n, 255n, 256n, 0xffffn, 1n << 32n, 1n << 56n, MAX_UINT64];
    for (const kid of values) {
      for (const ctr of values) {
        const header = encodeHeader(kid, ctr);
        const frame = new Uint8Array([...header, 0xaa, 0xbb]);
        const decoded = decodeHeader(frame);
        expect([decoded.kid, decoded.ctr, decoded.bytes]).toEqual([kid, ctr, header]);
      }
    }
  });

  it('takes numbers and refuses values outside 0…2^64−1', () => {
    expect(encodeHeader(3, 9)).toEqual(bytes(0x38, 0x09));
    expect(syncFailure(() => encodeHeader(-1n, 0))).toBe('INVALID_ARGUMENT');
    expect(syncFailure(() => encodeHeader(0, MAX_UINT64 + 1n))).toBe('INVALID_ARGUMENT');
    expect(syncFailure(() => encodeHeader(0.5, 0))).toBe('INVALID_ARGUMENT');
    expect(syncFailure(() => encodeHeader(2 ** 53, 0))).toBe('INVALID_ARGUMENT');
  });

  it('refuses truncated and non-minimal headers', () => {
    expect(syncFailure(() => decodeHeader(bytes()))).toBe('TRUNCATED_HEADER');
    expect(syncFailure(() => decodeHeader(bytes(0x09, 0x01)))).toBe('TRUNCATED_HEADER');
    // An 8-byte KID, then the 1-byte CTR is missing.
    expect(syncFailure(() => decodeHeader(bytes(0xf8, 1, 2, 3, 4, 5, 6, 7, 8)))).toBe(
      'TRUNCATED_HEADER',
    );
    // 5 in an extended field, and 0x0100 spelled with a leading zero byte.
    expect(syncFailure(() => decodeHeader(bytes(0x08, 0x05)))).toBe('MALFORMED_HEADER');
    expect(syncFailure(() => decodeHeader(bytes(0x0a, 0x00, 0x01, 0x00)))).toBe('MALFORMED_HEADER');
    expect(syncFailure(() => decodeHeader(bytes(0x90, 0x00, 0x09)))).toBe('MALFORMED_HEADER');
  });
});

describe('round trips', () => {
  for (const suite of SUITES) {
    const { name, nt } = suiteParameters(suite);
    it(`${name}: frames of every size, with and without metadata, decrypt as sent`, async () => {
      const { sender, receiver } = await pair(suite, MAX_UINT64);
      for (const size of [0, 1, 15, 16, 17, 1000, 100_000]) {
        const plaintext = new Uint8Array(size).map((_, i) => i * 7);
        const metadata = size % 2 === 0 ? text(`metadata ${size}`) : undefined;
        const frame = await sender.encrypt(plaintext, metadata);
        expect(frame.length).toBe(encodeHeader(MAX_UINT64, sender.counter - 1n).length + size + nt);
        const decrypted = await receiver.decrypt(frame, metadata);
        // Buffer's comparison: a deep equality of 100 000 elements takes a visible while.
        expect(Buffer.from(decrypted.plaintext).equals(plaintext)).toBe(true);
        expect(decrypted.kid).toBe(MAX_UINT64);
      }
      expect(sender.counter).toBe(7n);
    });
  }

  it('takes ArrayBuffer frames (what RTCEncodedVideoFrame.data is)', async () => {
    const { sender, receiver } = await pair(CipherSuite.AES_128_GCM_SHA256_128);
    const frame = await sender.encrypt(text('hello'));
    const copy = frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength);
    const decrypted = await receiver.decrypt(copy as unknown as Uint8Array);
    expect(decrypted.plaintext).toEqual(text('hello'));
  });
});

describe('rejections', () => {
  for (const suite of SUITES) {
    const { name, nt } = suiteParameters(suite);
    it(`${name}: tampering with header, metadata, ciphertext or tag fails authentication`, async () => {
      const kid = 0x1234;
      const { sender, receiver } = await pair(suite, kid, 300n);
      const metadata = text('frame metadata');
      const frame = await sender.encrypt(text('a media frame'), metadata);
      const headerLength = decodeHeader(frame).bytes.length;
      const flip = (index: number, bit = 0) => {
        const copy = frame.slice();
        copy[index] = (copy[index] ?? 0) ^ (1 << bit);
        return copy;
      };
      // The last CTR byte, the first and last ciphertext bytes, the first and last tag bytes.
      const positions = [headerLength - 1, headerLength, frame.length - nt - 1];
      positions.push(frame.length - nt, frame.length - 1);
      for (const index of positions) {
        for (const bit of [0, 7]) {
          expect(await failure(receiver.decrypt(flip(index, bit), metadata))).toBe(
            'AUTHENTICATION_FAILED',
          );
        }
      }
      expect(await failure(receiver.decrypt(frame, text('other metadata')))).toBe(
        'AUTHENTICATION_FAILED',
      );
      expect(await failure(receiver.decrypt(frame))).toBe('AUTHENTICATION_FAILED');
      // A flipped KID byte names a key nobody holds.
      expect(await failure(receiver.decrypt(flip(1), metadata))).toBe('UNKNOWN_KID');
      // Failed attempts did not consume the counter: the genuine frame still decrypts once.
      expect((await receiver.decrypt(frame, metadata)).ctr).toBe(300n);
      expect(await failure(receiver.decrypt(frame, metadata))).toBe('REPLAY');
    });

    it(`${name}: every truncation is refused with its reason`, async () => {
      const { sender, receiver } = await pair(suite, 0x1234, 0x10000n);
      const frame = await sender.encrypt(text('a media frame'));
      const headerLength = decodeHeader(frame).bytes.length;
      for (let length = 0; length < frame.length; length++) {
        const expected =
          length < headerLength
            ? 'TRUNCATED_HEADER'
            : length < headerLength + nt
              ? 'TRUNCATED_CIPHERTEXT'
              : 'AUTHENTICATION_FAILED';
        expect(await failure(receiver.decrypt(frame.subarray(0, length))), `${length}`).toBe(
          expected,
        );
      }
    });
  }

  it('a key derived from another base key, or another KID, does not open the frame', async () => {
    const suite = CipherSuite.AES_128_CTR_HMAC_SHA256_32;
    const sender = await SFrameSender.create({ suite, kid: 9, baseKey: baseKey(1) });
    const frame = await sender.encrypt(text('x'));
    const wrong = new SFrameReceiver({ suite });
    await wrong.addKey(9, baseKey(2));
    expect(await failure(wrong.decrypt(frame))).toBe('AUTHENTICATION_FAILED');
    const other = new SFrameReceiver({ suite });
    await other.addKey(10, baseKey(1));
    expect(await failure(other.decrypt(frame))).toBe('UNKNOWN_KID');
  });

  it('unknown and removed KIDs', async () => {
    const suite = CipherSuite.AES_256_GCM_SHA512_128;
    const { sender, receiver } = await pair(suite, 7);
    const frame = await sender.encrypt(text('x'));
    expect(receiver.kids()).toEqual([7n]);
    expect(receiver.removeKey(7)).toBe(true);
    expect(receiver.removeKey(7)).toBe(false);
    expect(receiver.hasKey(7n)).toBe(false);
    expect(await failure(receiver.decrypt(frame))).toBe('UNKNOWN_KID');
  });

  it('a KID is added once; removed, it can be added again', async () => {
    const receiver = new SFrameReceiver({ suite: CipherSuite.AES_128_GCM_SHA256_128 });
    await receiver.addKey(1, baseKey(1));
    expect(await failure(receiver.addKey(1n, baseKey(2)))).toBe('DUPLICATE_KID');
    const concurrent = await Promise.allSettled([
      receiver.addKey(2, baseKey(1)),
      receiver.addKey(2, baseKey(2)),
    ]);
    expect(concurrent.map((result) => result.status).sort()).toEqual(['fulfilled', 'rejected']);
    receiver.removeKey(1);
    await receiver.addKey(1, baseKey(3));
    expect(receiver.kids().sort()).toEqual([1n, 2n]);
  });

  it('bad arguments: suites, keys, counters, windows, non-bytes', async () => {
    const suite = CipherSuite.AES_128_GCM_SHA256_128;
    expect(await failure(SFrameSender.create({ suite: 6, kid: 0, baseKey: baseKey(1) }))).toBe(
      'UNSUPPORTED_SUITE',
    );
    expect(syncFailure(() => new SFrameReceiver({ suite: 0 }))).toBe('UNSUPPORTED_SUITE');
    expect(syncFailure(() => new SFrameReceiver({ suite, replayWindow: 0 }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await failure(SFrameSender.create({ suite, kid: 0, baseKey: bytes() }))).toBe('BAD_KEY');
    expect(await failure(SFrameSender.create({ suite, kid: -1, baseKey: baseKey(1) }))).toBe(
      'INVALID_ARGUMENT',
    );
    const receiver = new SFrameReceiver({ suite });
    await receiver.addKey(0, baseKey(1));
    expect(await failure(receiver.addKey(1, 'key' as unknown as Uint8Array))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await failure(receiver.decrypt(null as unknown as Uint8Array))).toBe('INVALID_ARGUMENT');
    expect(await failure(receiver.decrypt(bytes(0, 0), [1] as unknown as Uint8Array))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});

describe('replay window', () => {
  it(`accepts each counter once, out of order within ${DEFAULT_REPLAY_WINDOW}, none older`, async () => {
    const suite = CipherSuite.AES_128_CTR_HMAC_SHA256_64;
    const { sender, receiver } = await pair(suite);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 300; i++) frames.push(await sender.encrypt(text(`frame ${i}`)));
    const at = (i: number) => frames[i] ?? bytes();
    await receiver.decrypt(at(200));
    // Within the window behind 200 (73…199): accepted once, in any order.
    for (const i of [199, 73, 150, 100])
      expect((await receiver.decrypt(at(i))).ctr).toBe(BigInt(i));
    for (const i of [200, 199, 73, 150])
      expect(await failure(receiver.decrypt(at(i)))).toBe('REPLAY');
    // 72 is 128 behind 200: outside.
    expect(await failure(receiver.decrypt(at(72)))).toBe('REPLAY');
    expect(await failure(receiver.decrypt(at(0)))).toBe('REPLAY');
    // Jumping far ahead forgets the old bitmap but keeps refusing what is behind.
    expect((await receiver.decrypt(at(299))).ctr).toBe(299n);
    expect(await failure(receiver.decrypt(at(150)))).toBe('REPLAY');
    expect((await receiver.decrypt(at(172))).ctr).toBe(172n);
  });

  it('two copies of one frame decrypted at once: exactly one passes', async () => {
    const { sender, receiver } = await pair(CipherSuite.AES_128_GCM_SHA256_128);
    const frame = await sender.encrypt(text('once'));
    const results = await Promise.allSettled([receiver.decrypt(frame), receiver.decrypt(frame)]);
    expect(results.map((result) => result.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((result) => result.status === 'rejected');
    expect((rejected?.reason as SFrameError).code).toBe('REPLAY');
  });

  it('windows are per KID (per sender and epoch)', async () => {
    const suite = CipherSuite.AES_128_GCM_SHA256_128;
    const alice = await SFrameSender.create({ suite, kid: 0x100, baseKey: baseKey(1) });
    const bob = await SFrameSender.create({ suite, kid: 0x200, baseKey: baseKey(2) });
    const receiver = new SFrameReceiver({ suite });
    await receiver.addKey(0x100, baseKey(1));
    await receiver.addKey(0x200, baseKey(2));
    const a = await alice.encrypt(text('a'));
    const b = await bob.encrypt(text('b'));
    // Both carry counter 0; each is new under its own key.
    expect((await receiver.decrypt(a)).kid).toBe(0x100n);
    expect((await receiver.decrypt(b)).kid).toBe(0x200n);
  });

  it('the bitmap, directly, with a small window', () => {
    const window = new ReplayWindow(4);
    for (const ctr of [10n, 8n, 7n]) {
      expect(window.accepts(ctr)).toBe(true);
      window.mark(ctr);
    }
    expect([6n, 7n, 8n, 9n, 10n, 11n].map((ctr) => window.accepts(ctr))).toEqual([
      false,
      false,
      false,
      true,
      false,
      true,
    ]);
    window.mark(MAX_UINT64);
    expect(window.accepts(MAX_UINT64 - 3n)).toBe(true);
    expect(window.accepts(MAX_UINT64 - 4n)).toBe(false);
  });
});

describe('sender', () => {
  it('uses consecutive counters, also when frames are encrypted concurrently', async () => {
    const { sender } = await pair(CipherSuite.AES_128_GCM_SHA256_128);
    const frames = await Promise.all(
      Array.from({ length: 20 }, (_, i) => sender.encrypt(text(`${i}`))),
    );
    expect(frames.map((frame) => decodeHeader(frame).ctr)).toEqual(
      Array.from({ length: 20 }, (_, i) => BigInt(i)),
    );
  });

  it('refuses to wrap its counter', async () => {
    const suite = CipherSuite.AES_128_CTR_HMAC_SHA256_80;
    const { sender, receiver } = await pair(suite, 5, MAX_UINT64 - 1n);
    await sender.encrypt(text('second to last'));
    const last = await sender.encrypt(text('last'));
    expect((await receiver.decrypt(last)).ctr).toBe(MAX_UINT64);
    expect(await failure(sender.encrypt(text('one too many')))).toBe('COUNTER_EXHAUSTED');
    expect(await failure(sender.encrypt(text('still')))).toBe('COUNTER_EXHAUSTED');
    // A new key (next epoch) starts over.
    await sender.rekey(6, baseKey(2));
    await receiver.addKey(6, baseKey(2));
    const next = await sender.encrypt(text('new epoch'));
    expect(decodeHeader(next)).toMatchObject({ kid: 6n, ctr: 0n });
    expect((await receiver.decrypt(next)).plaintext).toEqual(text('new epoch'));
  });
});
