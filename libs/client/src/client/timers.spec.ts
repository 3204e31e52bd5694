import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { timerEnvelope, textEnvelope } from '../content/envelope.js';
import {
  checkMessageTimer,
  earliestExpiry,
  ExpiryAlarm,
  isValidMessageTimer,
  messageExpiry,
  splitExpired,
  timerForgery,
} from './timers.js';

describe('message timer values', () => {
  it('takes 0 (off) and 5–86,400 whole seconds, nothing else', () => {
    for (const ok of [0, 5, 30, 3_600, 86_400]) expect(isValidMessageTimer(ok)).toBe(true);
    for (const wrong of [-5, 1, 4, 86_401, 2.5, Number.NaN, Infinity]) {
      expect(isValidMessageTimer(wrong)).toBe(false);
      expect(() => {
        checkMessageTimer(wrong);
      }).toThrow(expect.objectContaining({ code: 'BAD_TIMER', details: { field: 'seconds' } }));
    }
  });
});

describe('messageExpiry', () => {
  const stored = new Date('2026-01-01T00:00:00Z');
  const at = (ms: number) => new Date(stored.getTime() + ms);

  it('is the earlier of the server expiry and storage time plus the authenticated timer', () => {
    expect(messageExpiry(stored, at(60_000), 5)).toEqual(at(5_000));
    expect(messageExpiry(stored, at(3_000), 5)).toEqual(at(3_000));
  });

  it('uses whichever exists, and null when neither does', () => {
    expect(messageExpiry(stored, null, 5)).toEqual(at(5_000));
    expect(messageExpiry(stored, at(7_000), null)).toEqual(at(7_000));
    // A timer authenticated as off leaves the server's word (the server deletes anyway).
    expect(messageExpiry(stored, at(7_000), 0)).toEqual(at(7_000));
    expect(messageExpiry(stored, null, 0)).toBeNull();
    expect(messageExpiry(stored, null, null)).toBeNull();
  });
});

describe('timerForgery', () => {
  const timer = { kind: 'TIMER', senderDeviceId: 'd1', timerSeconds: 30 };

  it('accepts a TIMER entry whose envelope, value and MLS sender match', () => {
    expect(timerForgery(timer, timerEnvelope(30), 'd1')).toBeNull();
  });

  it('names what does not match', () => {
    expect(timerForgery({ ...timer, timerSeconds: 3_600 }, timerEnvelope(30), 'd1')).toBe(
      'VALUE_MISMATCH',
    );
    expect(timerForgery(timer, timerEnvelope(30), 'd2')).toBe('SENDER_MISMATCH');
    expect(timerForgery(timer, textEnvelope('hi'), 'd1')).toBe('NOT_A_TIMER');
    expect(timerForgery(timer, null, 'd1')).toBe('NOT_A_TIMER');
  });

  it('flags a timer change hidden in an APPLICATION entry, and passes ordinary messages', () => {
    const application = { kind: 'APPLICATION', senderDeviceId: 'd1', timerSeconds: null };
    expect(timerForgery(application, timerEnvelope(7), 'd1')).toBe('HIDDEN_TIMER');
    expect(timerForgery(application, timerEnvelope(7), 'd2')).toBe('SENDER_MISMATCH');
    expect(timerForgery(application, textEnvelope('hi'), 'd1')).toBeNull();
    expect(timerForgery(application, null, null)).toBeNull();
  });
});

describe('expiry bookkeeping', () => {
  const now = Date.parse('2026-01-01T00:00:10Z');
  const items = [
    { seq: 1, expiresAt: '2026-01-01T00:00:05Z' },
    { seq: 2, expiresAt: null },
    { seq: 3, expiresAt: new Date('2026-01-01T00:00:10Z') },
    { seq: 4, expiresAt: '2026-01-01T00:00:20Z' },
    { seq: 5 },
  ];

  it('splits what is due (at or before now) from what is kept', () => {
    const { kept, expired } = splitExpired(items, now);
    expect(expired.map((item) => item.seq)).toEqual([1, 3]);
    expect(kept.map((item) => item.seq)).toEqual([2, 4, 5]);
  });

  it('finds the earliest expiry, or null', () => {
    expect(earliestExpiry(items)).toBe(Date.parse('2026-01-01T00:00:05Z'));
    expect(earliestExpiry([{ expiresAt: null }, {}])).toBeNull();
  });
});

describe('ExpiryAlarm', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires once at the time set, again when set anew, never after cancel', () => {
    const fired: number[] = [];
    const alarm = new ExpiryAlarm(() => fired.push(Date.now()));
    const start = Date.now();
    alarm.set(start + 5_000);
    alarm.set(start + 5_000);
    vi.advanceTimersByTime(4_999);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([start + 5_000]);
    alarm.set(start + 7_000);
    alarm.set(start + 6_000);
    vi.advanceTimersByTime(1_000);
    expect(fired).toEqual([start + 5_000, start + 6_000]);
    vi.advanceTimersByTime(5_000);
    expect(fired).toHaveLength(2);
    alarm.set(start + 20_000);
    alarm.cancel();
    alarm.set(null);
    vi.advanceTimersByTime(60_000);
    expect(fired).toHaveLength(2);
  });

  it('fires at once for a time already past', () => {
    const fired: number[] = [];
    const alarm = new ExpiryAlarm(() => fired.push(1));
    alarm.set(Date.now() - 1_000);
    vi.advanceTimersByTime(0);
    expect(fired).toEqual([1]);
  });
});
