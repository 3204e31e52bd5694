import { describe, expect, it } from 'vitest';
import { setBounded } from './bounded-map.js';

describe('setBounded', () => {
  it('keeps the newest entries up to the limit, a key set again counting as new', () => {
    const map = new Map<string, number>();
    for (const [i, key] of ['a', 'b', 'c'].entries()) setBounded(map, key, i, 3);
    setBounded(map, 'a', 9, 3);
    setBounded(map, 'd', 3, 3);
    expect([...map.entries()]).toEqual([
      ['c', 2],
      ['a', 9],
      ['d', 3],
    ]);
  });
});
