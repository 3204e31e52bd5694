import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import {
  bytesEqual,
  concatBytes,
  fromBase64,
  fromHex,
  isBase64,
  toBase64,
  toHex,
} from './bytes.js';

const every = Uint8Array.from({ length: 256 }, (_, i) => i);

describe('bytes', () => {
  it('writes base64 as Node does, and reads it back, for every length mod 3', () => {
    for (const length of [0, 1, 2, 3, 4, 5, 256]) {
      const bytes = every.subarray(0, length);
      const text = toBase64(bytes);
      expect(text).toBe(Buffer.from(bytes).toString('base64'));
      expect(isBase64(text)).toBe(true);
      expect(fromBase64(text)).toEqual(new Uint8Array(bytes));
    }
  });

  it('handles inputs larger than one String.fromCharCode slice', () => {
    const big = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 7919) % 256);
    expect(toBase64(big)).toBe(Buffer.from(big).toString('base64'));
    expect(fromBase64(toBase64(big))).toEqual(big);
  });

  it.each([['AAA'], ['AA='], ['AAAA='], ['A==='], ['AA AA'], ['AA\nAA'], ['-_8='], ['AAAA====']])(
    'refuses %j as base64 (the server refuses it as Bytes)',
    (text) => {
      expect(isBase64(text)).toBe(false);
      expect(() => fromBase64(text)).toThrow(TypeError);
    },
  );

  it('writes lower-case hex and reads either case', () => {
    expect(toHex(every)).toBe(Buffer.from(every).toString('hex'));
    expect(fromHex(toHex(every))).toEqual(every);
    expect(fromHex('ABcd')).toEqual(new Uint8Array([0xab, 0xcd]));
    expect(fromHex('')).toEqual(new Uint8Array());
    for (const bad of ['a', 'abc', 'zz', '0x00', 'ab cd']) {
      expect(() => fromHex(bad)).toThrow(TypeError);
    }
  });

  it('makes hex a flat string: map keys of it keep the hex, not one node per byte', () => {
    // A string grown with += is a tree of 32-byte nodes, one per byte here; kept as a map key it
    // costs 16 times the hex. The heap a thousand 1 KiB keys keep, after a full collection:
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const keys = new Map<string, number>();
    const bytes = Uint8Array.from({ length: 1024 }, (_, i) => i % 251);
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 1000; i++) {
      bytes[0] = i % 256;
      bytes[1] = i >> 8;
      keys.set(toHex(bytes), i);
    }
    gc();
    const keptPerKey = (process.memoryUsage().heapUsed - before) / keys.size;
    // Flat: 2 KiB of hex and a header. As a tree of 1,024 nodes it was about 33 KiB.
    expect(keptPerKey).toBeLessThan(4096);
  });

  it('concatenates into a new array', () => {
    const a = new Uint8Array([1, 2]);
    const out = concatBytes(a, new Uint8Array(), new Uint8Array([3]));
    expect(out).toEqual(new Uint8Array([1, 2, 3]));
    out[0] = 9;
    expect(a[0]).toBe(1);
    expect(concatBytes()).toEqual(new Uint8Array());
  });

  it('compares bytes by value, including views into larger buffers', () => {
    expect(bytesEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3]))).toBe(true);
    expect(bytesEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4]))).toBe(false);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3]))).toBe(false);
    expect(bytesEqual(every.subarray(10, 20), every.slice(10, 20))).toBe(true);
    expect(bytesEqual(new Uint8Array(), new Uint8Array())).toBe(true);
  });
});
