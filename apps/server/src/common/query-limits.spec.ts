import { buildSchema, parse, specifiedRules, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import type { QueryLimitsConfig } from '../config/config.js';
import { isTokenLimitError, queryLimitRules, queryParseOptions } from './query-limits.js';

// A schema with a cycle, so depth and cost can grow without bound (Parley's own has none).
const schema = buildSchema(`
  type Node { id: ID! name: String next: Node children(first: Int): [Node!]! }
  type Query { node: Node nodes: [Node!]! }
`);
const limits: QueryLimitsConfig = {
  maxTokens: 200,
  maxDepth: 5,
  maxAliases: 3,
  maxRootFields: 4,
  maxDirectives: 3,
  maxCost: 30,
};
const rules = [...specifiedRules, ...queryLimitRules(limits)];

function refusals(query: string): string[] {
  return validate(schema, parse(query), rules).map((error) => {
    expect(error.extensions.code).toBe('QUERY_TOO_COMPLEX');
    return error.message;
  });
}

describe('query limits', () => {
  it('accept an ordinary operation', () => {
    expect(refusals('{ node { id name next { id } } nodes { id } }')).toEqual([]);
  });

  it('refuse each kind of excess with QUERY_TOO_COMPLEX, naming the limit', () => {
    expect(refusals('{ node { next { next { next { next { next { id } } } } } } }')).toEqual(
      expect.arrayContaining([expect.stringContaining('depth limit of 5')]),
    );
    expect(refusals('{ a: node { id } b: node { id } c: node { id } d: node { id } }')).toEqual(
      expect.arrayContaining([expect.stringContaining('Aliases limit of 3')]),
    );
    expect(
      refusals(
        '{ node { id } nodes { id } ...F ... on Query { node { id } } } fragment F on Query { nodes { id } node { id } }',
      ),
    ).toEqual(
      expect.arrayContaining([expect.stringContaining('Root fields limit of 4 exceeded, found 5')]),
    );
    expect(
      refusals(
        '{ node { ... @skip(if: false) { id } ... @skip(if: false) { id } ... @skip(if: false) { id } ... @skip(if: false) { id } } }',
      ),
    ).toEqual(expect.arrayContaining([expect.stringContaining('Directives limit of 3')]));
    expect(
      refusals('{ nodes { id name children { id name children { id name next { id name } } } } }'),
    ).toEqual(expect.arrayContaining([expect.stringContaining('Query Cost limit of 30')]));
  });

  it('stop the parser at the token limit, with a message the error mapping recognises', () => {
    const long = `{ ${Array.from({ length: 300 }, () => 'node { id }').join(' ')} }`;
    expect(() => parse(long, queryParseOptions(limits))).toThrow();
    try {
      parse(long, queryParseOptions(limits));
    } catch (error) {
      expect(isTokenLimitError((error as Error).message)).toBe(true);
    }
    expect(isTokenLimitError('Syntax Error: Unexpected Name "x".')).toBe(false);
  });
});
