import { describe, expect, it } from 'vitest';
import { RosterMismatch, rosterChange } from './roster.js';

const seat = (deviceId: string, leafIndex: number) => ({ deviceId, leafIndex });

describe('rosterChange', () => {
  const current = [seat('a', 0), seat('b', 1), seat('c', 2)];

  it('derives adds and removes that match the proposals', () => {
    expect(
      rosterChange(
        current,
        [1],
        ['d', 'e'],
        [seat('a', 0), seat('d', 1), seat('c', 2), seat('e', 3)],
      ),
    ).toEqual({
      added: [seat('d', 1), seat('e', 3)],
      removed: [seat('b', 1)],
    });
    expect(rosterChange(current, [], [], current)).toEqual({ added: [], removed: [] });
  });

  it.each([
    ['a remove of an empty leaf', [5], [], current],
    ['a member missing without a Remove', [], [], [seat('a', 0), seat('b', 1)]],
    ['a member moved to another leaf', [], [], [seat('a', 0), seat('b', 3), seat('c', 2)]],
    ['a leaf handed over without a Remove', [], [], [seat('a', 0), seat('x', 1), seat('c', 2)]],
    ['a device in the tree without an Add', [], [], [...current, seat('x', 3)]],
    ['an Add missing from the tree', [], ['d'], current],
    ['one device at two leaves', [], ['d'], [...current, seat('d', 3), seat('d', 4)]],
    ['a removed member still in the tree', [1], [], current],
    ['the same device added twice', [], ['d', 'd'], [...current, seat('d', 3)]],
  ])('rejects %s', (_name, removes, adds, tree) => {
    expect(() => rosterChange(current, removes, adds, tree)).toThrow(RosterMismatch);
  });
});
