import { describe, expect, it } from 'vitest';
import { newDeviceId } from './device-id.js';

describe('newDeviceId', () => {
  it('makes 16 hex digits that never start with 0, and does not repeat itself', () => {
    const ids = Array.from({ length: 10_000 }, newDeviceId);
    expect(ids.every((id) => /^[1-9a-f][0-9a-f]{15}$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    // Every allowed first digit occurs: the first byte is spread over 0x10–0xff.
    expect(new Set(ids.map((id) => id[0])).size).toBe(15);
  });
});
