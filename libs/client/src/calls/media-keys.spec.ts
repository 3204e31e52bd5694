import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  crossEngineBaseKey,
  hkdfExpandSha256,
  mlsKid,
  parseMlsKid,
  securityCode,
  senderIndexBits,
} from './media-keys.js';

const hex = (value: string) => new Uint8Array(Buffer.from(value, 'hex'));

describe('KID layout (RFC 9605 §5.2)', () => {
  it('gives S the smallest width that fits every member index', () => {
    const widths = [1, 2, 3, 4, 5, 8, 9, 64, 65].map((size) => senderIndexBits(size));
    expect(widths).toEqual([0, 1, 2, 2, 3, 3, 4, 6, 7]);
  });

  it('reproduces figure 9 of RFC 9605 (E = 4, S = 6)', () => {
    const kid = (epoch: number, senderIndex: number, context = 0) =>
      mlsKid({ context: BigInt(context), senderIndex, epoch: BigInt(epoch) }, 64, 4);
    expect([kid(14, 3), kid(14, 7), kid(14, 20)]).toEqual([0x3en, 0x7en, 0x14en]);
    expect([kid(15, 3), kid(15, 5)]).toEqual([0x3fn, 0x5fn]);
    expect([kid(16, 2, 2), kid(16, 2, 3)]).toEqual([0x820n, 0xc20n]);
    expect([kid(17, 33), kid(17, 51)]).toEqual([0x211n, 0x331n]);
  });

  it('parses what it builds, with 8 epoch bits by default', () => {
    const kid = mlsKid({ context: 0xdeadbeefn, senderIndex: 5, epoch: 0x1234n }, 7);
    // S = 3 for 7 members, E = 8: context ‖ 101 ‖ 0x34.
    expect(kid).toBe((0xdeadbeefn << 11n) | (5n << 8n) | 0x34n);
    expect(parseMlsKid(kid, 7)).toEqual({ context: 0xdeadbeefn, senderIndex: 5, epochBits: 0x34 });
  });

  it('refuses fields that do not fit', () => {
    expect(() => mlsKid({ context: 0n, senderIndex: 2, epoch: 0n }, 2)).toThrow(/below/);
    expect(() => mlsKid({ context: 1n << 56n, senderIndex: 0, epoch: 0n }, 1)).toThrow(/fit/);
  });
});

describe('derivations', () => {
  it('HKDF-Expand passes RFC 5869 test case 1', async () => {
    const prk = hex('077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5');
    const okm = await hkdfExpandSha256(prk, hex('f0f1f2f3f4f5f6f7f8f9'), 42);
    expect(Buffer.from(okm).toString('hex')).toBe(
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
    );
  });

  it('derives the cross-engine base key as HKDF-Expand(export, "SFrame 1.0 Base Key", Nk)', async () => {
    const exported = new Uint8Array(32).map((_, i) => i * 7);
    // One HKDF block, computed with Node's HMAC rather than WebCrypto.
    const expected = createHmac('sha256', exported)
      .update(Buffer.concat([Buffer.from('SFrame 1.0 Base Key'), Buffer.from([1])]))
      .digest()
      .subarray(0, 16);
    expect(Buffer.from(await crossEngineBaseKey(exported)).toString('hex')).toBe(
      expected.toString('hex'),
    );
  });

  it('shows the security code as five groups of five digits', async () => {
    const exported = new Uint8Array(32).fill(9);
    const bytes = createHmac('sha256', exported)
      .update(Buffer.concat([Buffer.from('Parley security code'), Buffer.from([1])]))
      .digest();
    const expected = [0, 1, 2, 3, 4]
      .map((i) => String(bytes.readUInt32BE(i * 4) % 100_000).padStart(5, '0'))
      .join(' ');
    const code = await securityCode(exported);
    expect(code).toBe(expected);
    expect(code).toMatch(/^\d{5}( \d{5}){4}$/);
    expect(await securityCode(new Uint8Array(32).fill(10))).not.toBe(code);
  });
});
