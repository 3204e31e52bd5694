import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';

function fail(): never {
  throw new GraphQLError('SafeInt must be a whole number from 0 to 2^53 − 1', {
    extensions: { code: 'BAD_USER_INPUT' },
  });
}

function parse(value: unknown): string {
  const text = typeof value === 'number' || typeof value === 'string' ? String(value) : '';
  if (!/^\d{1,16}$/.test(text) || !Number.isSafeInteger(Number(text))) fail();
  return String(Number(text));
}

/**
 * Epochs and sequence numbers: int8 in the database (strings in code, as `pg` returns them),
 * JSON numbers on the wire — exact up to 2^53 − 1, more than any conversation will reach.
 */
export const SafeIntScalar = new GraphQLScalarType<string, number>({
  name: 'SafeInt',
  description: 'A non-negative integer up to 2^53 − 1 (epochs, sequence numbers)',
  serialize(value) {
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'bigint') {
      throw new TypeError('SafeInt must serialize a string, number or bigint');
    }
    return Number(parse(String(value)));
  },
  parseValue: parse,
  parseLiteral(ast) {
    return parse(ast.kind === Kind.INT || ast.kind === Kind.STRING ? ast.value : undefined);
  },
});
