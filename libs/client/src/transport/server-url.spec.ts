import { describe, expect, it } from 'vitest';
import { BadInputError } from '../errors.js';
import { normalizeServerUrl } from './server-url.js';

describe('normalizeServerUrl', () => {
  it('takes the base URL or the GraphQL URL, with or without trailing slashes', () => {
    for (const input of [
      'http://127.0.0.1:4000',
      'http://127.0.0.1:4000/',
      'http://127.0.0.1:4000/graphql',
      'http://127.0.0.1:4000/graphql/',
      ' http://127.0.0.1:4000// ',
    ]) {
      expect(normalizeServerUrl(input)).toBe('http://127.0.0.1:4000/graphql');
    }
    expect(normalizeServerUrl('https://chat.example.org')).toBe('https://chat.example.org/graphql');
    // Behind a proxy under a path prefix.
    expect(normalizeServerUrl('https://example.org/parley/')).toBe(
      'https://example.org/parley/graphql',
    );
  });

  it('refuses what is not an http(s) server URL, with a message a person can read', () => {
    for (const input of [
      'not-a-url',
      '',
      'localhost:4000',
      'ftp://example.org',
      'ws://127.0.0.1:4000/graphql',
      'http://127.0.0.1:4000/graphql?x=1',
      'file:///etc/passwd',
    ]) {
      let thrown: unknown;
      try {
        normalizeServerUrl(input);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, input).toBeInstanceOf(BadInputError);
      expect((thrown as BadInputError).code).toBe('INVALID_URL');
      expect((thrown as BadInputError).message).toContain('is not a server URL (expected');
    }
    expect(() => normalizeServerUrl('not-a-url')).toThrow(
      'not-a-url is not a server URL (expected http://host:4000 or http://host:4000/graphql)',
    );
  });
});
