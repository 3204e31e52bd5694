import { describe, expect, it } from 'vitest';
import { NetworkError, RateLimitedError, UnauthenticatedError } from '../errors.js';
import { closeError } from './graphql-transport.js';

describe('closeError', () => {
  it('reads the server’s close codes as typed errors', () => {
    expect(closeError({ code: 4401, reason: 'Token revoked' })).toBeInstanceOf(
      UnauthenticatedError,
    );
    expect(closeError({ code: 4403, reason: 'Forbidden' })).toBeInstanceOf(UnauthenticatedError);
    const limited = closeError({ code: 4429, reason: 'Rate limited; retry after 7 s' });
    expect(limited).toBeInstanceOf(RateLimitedError);
    expect((limited as RateLimitedError).retryAfterSeconds).toBe(7);
    expect(closeError({ code: 1006, reason: '' })).toBeInstanceOf(NetworkError);
    expect(closeError(new Error('socket hang up')).message).toContain('socket hang up');
  });
});
