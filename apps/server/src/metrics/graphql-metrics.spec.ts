import { getOperationAST, parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { operationLabel } from './graphql-metrics.js';

const label = (query: string) => operationLabel(getOperationAST(parse(query)));

describe('operationLabel', () => {
  it('is the root field, never the client-chosen operation name or alias', () => {
    expect(label('mutation SendIt { sendMessage(input: {}) { seq } }')).toBe('sendMessage');
    expect(label('{ a: me { id } b: me { id } __typename }')).toBe('me');
  });

  it('is "multiple" for several root fields, "(none)" for none, "(unresolved)" without one', () => {
    expect(label('{ me { id } devices { id } }')).toBe('multiple');
    expect(label('{ __typename }')).toBe('(none)');
    expect(operationLabel(null)).toBe('(unresolved)');
  });
});
