import { describe, expect, it } from 'vitest';
import { NetworkError, RateLimitedError } from '../errors.js';
import { retryDelay } from './outbox.js';

describe('retryDelay', () => {
  it('backs off exponentially from 0.5 s to 30 s, with jitter between half and all of a step', () => {
    for (let i = 0; i < 200; i++) {
      const first = retryDelay(1, new NetworkError('NETWORK', 'down'));
      expect(first).toBeGreaterThanOrEqual(250);
      expect(first).toBeLessThanOrEqual(500);
      const fourth = retryDelay(4);
      expect(fourth).toBeGreaterThanOrEqual(2_000);
      expect(fourth).toBeLessThanOrEqual(4_000);
      const late = retryDelay(40);
      expect(late).toBeGreaterThanOrEqual(15_000);
      expect(late).toBeLessThanOrEqual(30_000);
    }
    // Jitter: delays of one step differ.
    expect(new Set(Array.from({ length: 20 }, () => retryDelay(3))).size).toBeGreaterThan(1);
  });

  it('waits at least as long as a rate limit asks', () => {
    const limited = new RateLimitedError('RATE_LIMITED', 'slow down', { retryAfterSeconds: 7 });
    expect(retryDelay(1, limited)).toBeGreaterThanOrEqual(7_000);
  });
});
