import { describe, expect, it } from 'vitest';
import { DEADLINE, OrderedDelivery, type Sequenced, withDeadlines } from './ordered-delivery.js';

const entry = (seq: number): Sequenced<string> => ({
  seq: BigInt(seq),
  follower: false,
  event: `e${seq}`,
});
const roster = (seq: number): Sequenced<string> => ({
  seq: BigInt(seq),
  follower: true,
  event: `r${seq}`,
});
const logged = (...seqs: number[]) => seqs.map((seq) => ({ seq: BigInt(seq), event: `e${seq}` }));

function ordered(options: { waitMs?: number; maxHeld?: number } = {}) {
  const clock = { now: 1_000 };
  const order = new OrderedDelivery<string>({ ...options, now: () => clock.now });
  return { order, clock };
}

describe('OrderedDelivery', () => {
  it('delivers entries in order as they come, from the baseline on', () => {
    const { order } = ordered();
    order.track('c', 5n);
    expect(order.accept('c', entry(5))).toEqual([]);
    expect(order.accept('c', entry(6))).toEqual(['e6']);
    expect(order.accept('c', entry(7))).toEqual(['e7']);
    expect(order.deadline()).toBeUndefined();
  });

  it('takes an entry at once only when it goes out on its own', () => {
    const { order } = ordered();
    expect(order.takeNext('c', 1n)).toBe(false);
    order.track('c', 5n);
    expect(order.takeNext('c', 7n)).toBe(false);
    expect(order.takeNext('c', 5n)).toBe(false);
    expect(order.takeNext('c', 6n)).toBe(true);
    // Taken: delivered as accept would have, so it is not delivered again.
    expect(order.accept('c', entry(6))).toEqual([]);
    expect(order.accept('c', entry(8))).toEqual([]);
    // 7 would release 8 with it: not on its own, and nothing changed.
    expect(order.takeNext('c', 7n)).toBe(false);
    expect(order.accept('c', entry(7))).toEqual(['e7', 'e8']);
    expect(order.takeNext('c', 9n)).toBe(true);
    expect(order.takeNext('c', 9n)).toBe(false);
  });

  it('holds an early entry until the missing one arrives, then releases both in order', () => {
    const { order } = ordered();
    order.track('c', 0n);
    expect(order.accept('c', entry(2))).toEqual([]);
    expect(order.accept('c', entry(3))).toEqual([]);
    expect(order.held).toBe(2);
    expect(order.accept('c', entry(1))).toEqual(['e1', 'e2', 'e3']);
    expect(order.held).toBe(0);
    expect(order.deadline()).toBeUndefined();
  });

  it('drops duplicates and entries at or before the baseline', () => {
    const { order } = ordered();
    order.track('c', 3n);
    expect(order.accept('c', entry(2))).toEqual([]);
    expect(order.accept('c', entry(3))).toEqual([]);
    expect(order.accept('c', entry(5))).toEqual([]);
    expect(order.accept('c', entry(5))).toEqual([]);
    expect(order.held).toBe(1);
    expect(order.accept('c', entry(4))).toEqual(['e4', 'e5']);
    expect(order.accept('c', entry(4))).toEqual([]);
  });

  it('keeps a roster event right after its commit entry, even when both are held', () => {
    const { order } = ordered();
    order.track('c', 0n);
    expect(order.accept('c', entry(2))).toEqual([]);
    expect(order.accept('c', roster(2))).toEqual([]);
    expect(order.accept('c', entry(3))).toEqual([]);
    expect(order.accept('c', entry(1))).toEqual(['e1', 'e2', 'r2', 'e3']);
    // The usual case: the commit, then its roster change, from the same publisher.
    expect(order.accept('c', entry(4))).toEqual(['e4']);
    expect(order.accept('c', roster(4))).toEqual(['r4']);
  });

  it('waits for a gap, then has it read from the log, and delivers in order', () => {
    const { order, clock } = ordered({ waitMs: 150 });
    order.track('c', 10n);
    expect(order.accept('c', entry(13))).toEqual([]);
    expect(order.deadline()).toBe(1_150);
    clock.now = 1_100;
    expect(order.due()).toEqual([]);
    expect(order.accept('c', entry(12))).toEqual([]);
    clock.now = 1_150;
    expect(order.due()).toEqual([{ conversationId: 'c', after: 10n }]);
    // The log has 11 to 14 by now; 12 and 13 were held already and are not delivered twice.
    expect(order.fill('c', logged(11, 12, 13, 14), 14n)).toEqual(['e11', 'e12', 'e13', 'e14']);
    expect(order.held).toBe(0);
    expect(order.deadline()).toBeUndefined();
    // 14 then arrives live: it was delivered from the log, so it is dropped.
    expect(order.accept('c', entry(14))).toEqual([]);
    expect(order.accept('c', entry(15))).toEqual(['e15']);
  });

  it('skips what the log no longer holds (retention), keeping the order of the rest', () => {
    const { order } = ordered();
    order.track('c', 0n);
    order.accept('c', entry(3));
    order.accept('c', roster(3));
    expect(order.fill('c', [], 3n)).toEqual(['e3', 'r3']);
    expect(order.accept('c', entry(4))).toEqual(['e4']);
  });

  it('fills only up to what the read covered and keeps waiting for the rest', () => {
    const { order, clock } = ordered({ waitMs: 150 });
    order.track('c', 0n);
    order.accept('c', entry(2));
    order.accept('c', entry(5));
    clock.now = 2_000;
    // A read limited to one page: it covered up to 3.
    expect(order.fill('c', logged(1, 2, 3), 3n)).toEqual(['e1', 'e2', 'e3']);
    expect(order.held).toBe(1);
    expect(order.deadline()).toBe(2_150);
    expect(order.accept('c', entry(4))).toEqual(['e4', 'e5']);
  });

  it('catches up after joining: a read past the baseline moves it', () => {
    const { order } = ordered();
    order.track('c', 7n);
    expect(order.fill('c', logged(8, 9), 9n)).toEqual(['e8', 'e9']);
    expect(order.accept('c', entry(9))).toEqual([]);
    expect(order.accept('c', entry(10))).toEqual(['e10']);
  });

  it('delivers a roster event late when its commit came from the log first', () => {
    const { order } = ordered();
    order.track('c', 0n);
    order.accept('c', entry(2));
    expect(order.fill('c', logged(1, 2), 2n)).toEqual(['e1', 'e2']);
    expect(order.accept('c', roster(1))).toEqual(['r1']);
  });

  it('reads the log at once when too much is held, whatever the wait', () => {
    const { order, clock } = ordered({ waitMs: 150, maxHeld: 3 });
    order.track('a', 0n);
    order.track('b', 0n);
    order.accept('a', entry(2));
    order.accept('a', entry(3));
    order.accept('b', entry(5));
    expect(order.due()).toEqual([]);
    order.accept('b', entry(6));
    expect(order.held).toBe(4);
    expect(order.deadline()).toBe(clock.now);
    expect(order.due().map((gap) => gap.conversationId)).toEqual(['a', 'b']);
    order.fill('a', logged(1), 3n);
    order.fill('b', logged(1, 2, 3, 4), 6n);
    expect(order.held).toBe(0);
  });

  it('forgets a conversation it stops following, and what it held for it', () => {
    const { order } = ordered();
    order.track('c', 0n);
    order.accept('c', entry(2));
    order.untrack('c');
    expect(order.held).toBe(0);
    expect(order.has('c')).toBe(false);
    expect(order.accept('c', entry(1))).toEqual([]);
    expect(order.fill('c', logged(1), 1n)).toEqual([]);
    // Following it again (re-added at 9) starts over from the new baseline.
    order.track('c', 9n);
    expect(order.accept('c', entry(9))).toEqual([]);
    expect(order.accept('c', entry(10))).toEqual(['e10']);
  });

  it('keeps conversations independent', () => {
    const { order } = ordered();
    order.track('a', 0n);
    order.track('b', 40n);
    expect(order.accept('a', entry(2))).toEqual([]);
    expect(order.accept('b', entry(41))).toEqual(['e41']);
    expect(order.accept('a', entry(1))).toEqual(['e1', 'e2']);
  });
});

describe('withDeadlines', () => {
  /** A source whose values the test hands out one at a time. */
  function source() {
    const waiting: ((result: IteratorResult<string, undefined>) => void)[] = [];
    let asked = 0;
    const iterator: AsyncIterator<string, undefined> = {
      next: () => {
        asked += 1;
        return new Promise((resolve) => waiting.push(resolve));
      },
    };
    return {
      iterator,
      asked: () => asked,
      give: (value: string) => waiting.shift()?.({ value, done: false }),
      end: () => waiting.shift()?.({ value: undefined, done: true }),
    };
  }

  it('yields the source, a deadline when it passes first, and never loses the awaited value', async () => {
    const from = source();
    let deadline: number | undefined = Date.now() + 20;
    const merged = withDeadlines(from.iterator, () => deadline);
    const first = merged.next();
    expect(await first).toEqual({ value: DEADLINE, done: false });
    deadline = undefined;
    const second = merged.next();
    from.give('a');
    expect(await second).toEqual({ value: 'a', done: false });
    // One outstanding request only, across the deadline.
    expect(from.asked()).toBe(1);
    const third = merged.next();
    from.end();
    expect(await third).toEqual({ value: undefined, done: true });
  });
});
