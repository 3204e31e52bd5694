import { describe, expect, it } from 'vitest';
import { formatTimer, parseTimer } from './duration.js';
import { EXIT, UsageError } from './errors.js';

describe('message timer durations', () => {
  it('reads seconds, minutes, hours, plain seconds and off', () => {
    expect(parseTimer('30s')).toBe(30);
    expect(parseTimer('5m')).toBe(300);
    expect(parseTimer('1h')).toBe(3_600);
    expect(parseTimer('24h')).toBe(86_400);
    expect(parseTimer('90')).toBe(90);
    expect(parseTimer(' 5S ')).toBe(5);
    expect(parseTimer('off')).toBe(0);
    expect(parseTimer('OFF')).toBe(0);
    expect(parseTimer('0')).toBe(0);
  });

  it('refuses what is outside 5 s–24 h or no duration, as a usage error (exit 2)', () => {
    for (const wrong of ['4s', '1', '25h', '1441m', '86401', '-5s', '1.5h', '1d', 'soon', '']) {
      expect(() => parseTimer(wrong), wrong).toThrow(UsageError);
    }
    expect(() => parseTimer('25h')).toThrow('a message timer is 5s to 24h, or off (25h is longer)');
    expect(() => parseTimer('2s')).toThrow('(2s is shorter)');
    try {
      parseTimer('2s');
    } catch (error) {
      expect((error as UsageError).exitCode).toBe(EXIT.usage);
    }
  });

  it('writes the largest whole unit', () => {
    expect([0, 5, 30, 90, 300, 3_600, 5_400, 86_400].map(formatTimer)).toEqual([
      'off',
      '5s',
      '30s',
      '90s',
      '5m',
      '1h',
      '90m',
      '24h',
    ]);
  });
});
