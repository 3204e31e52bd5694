import { describe, expect, it } from 'vitest';
import { RosterSession, rosterPages } from './rosters.js';

describe('RosterSession', () => {
  it('knows a followed roster read with nothing to do, at that epoch only', () => {
    const session = new RosterSession(['a']);
    expect(session.knows('a', 3)).toBe(false);
    session.settle('a', 3, session.before('a'));
    expect(session.knows('a', 3)).toBe(true);
    // A commit moved the epoch: read again.
    expect(session.knows('a', 4)).toBe(false);
  });

  it('keeps nothing of a conversation the subscription does not follow, until it does', () => {
    const session = new RosterSession([]);
    session.settle('b', 1, session.before('b'));
    expect(session.knows('b', 1)).toBe(false);
    session.follow('b');
    session.settle('b', 1, session.before('b'));
    expect(session.knows('b', 1)).toBe(true);
  });

  it('forgets a roster when a leave or deletion is announced, and a read that raced one', () => {
    const session = new RosterSession(['a']);
    session.settle('a', 2, session.before('a'));
    session.changed('a');
    expect(session.knows('a', 2)).toBe(false);
    // Read before the announcement, answered after it: the answer may predate the leave.
    const before = session.before('a');
    session.changed('a');
    session.settle('a', 2, before);
    expect(session.knows('a', 2)).toBe(false);
    session.settle('a', 2, session.before('a'));
    expect(session.knows('a', 2)).toBe(true);
  });
});

describe('rosterPages', () => {
  it('reads runs of consecutive due positions, never one that is not due', () => {
    expect(rosterPages([])).toEqual([]);
    expect(rosterPages([4])).toEqual([[4, 4]]);
    expect(rosterPages([0, 1, 2, 5, 7, 8])).toEqual([
      [0, 2],
      [5, 5],
      [7, 8],
    ]);
  });

  it('cuts a long run into pages of at most `size`', () => {
    const all = Array.from({ length: 25 }, (_, n) => n);
    expect(rosterPages(all, 10)).toEqual([
      [0, 9],
      [10, 19],
      [20, 24],
    ]);
  });
});
