import { describe, expect, it } from 'vitest';
import {
  DOMAIN_ERROR_CODES,
  ERROR_CODES,
  REQUEST_ERROR_CODES,
  isErrorCode,
} from './error-codes.js';

describe('error codes', () => {
  it('lists each code once, domain and request codes apart', () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    expect(ERROR_CODES).toHaveLength(DOMAIN_ERROR_CODES.length + REQUEST_ERROR_CODES.length);
    for (const code of ERROR_CODES) expect(code).toMatch(/^[A-Z][A-Z_]*[A-Z]$/);
  });

  it('tells a code the server sends from anything else', () => {
    expect(isErrorCode('STALE_EPOCH')).toBe(true);
    expect(isErrorCode('INTERNAL_SERVER_ERROR')).toBe(true);
    expect(isErrorCode('stale_epoch')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
    expect(isErrorCode(undefined)).toBe(false);
    expect(isErrorCode(42)).toBe(false);
  });
});
