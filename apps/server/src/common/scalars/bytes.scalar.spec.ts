import { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import { BytesScalar } from './bytes.scalar.js';

describe('Bytes scalar', () => {
  it('reads padded standard base64 of every length mod 3, large values included', () => {
    const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    for (const bytes of [0, 1, 2, 3, 4, 5, 256].map((n) => every.subarray(0, n))) {
      expect(BytesScalar.parseValue(bytes.toString('base64'))).toEqual(bytes);
    }
    const big = Buffer.alloc(500_000, 0xa5);
    expect(BytesScalar.parseValue(big.toString('base64'))).toEqual(big);
  });

  it('still admits non-zero bits before the padding, as the base64 rule does', () => {
    expect(BytesScalar.parseValue('AB==')).toEqual(Buffer.of(0));
    expect(BytesScalar.parseValue('AAB=')).toEqual(Buffer.of(0, 0));
  });

  it.each([
    ['AAA'],
    ['AA'],
    ['AA='],
    ['AAAA='],
    ['A==='],
    ['AA AA'],
    ['AA\nAA'],
    ['-_8='],
    ['AAAA===='],
  ])('refuses %j, which Node alone would decode', (text) => {
    expect(() => BytesScalar.parseValue(text)).toThrow(GraphQLError);
  });

  it('refuses what is not a string', () => {
    expect(() => BytesScalar.parseValue(12)).toThrow(GraphQLError);
    expect(() => BytesScalar.parseValue(null)).toThrow(GraphQLError);
  });
});
