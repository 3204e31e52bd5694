import { MESSAGE_TIMER_RANGE } from '@parley/client';
import { UsageError } from './errors.js';

const UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3_600 };

/**
 * A message timer as people type it — `30s`, `5m`, `1h`, plain seconds (`90`), or `off` / `0` —
 * in seconds (0 = off). UsageError (exit 2) for anything else, or outside 5 s–24 h.
 */
export function parseTimer(text: string): number {
  const value = text.trim().toLowerCase();
  if (value === 'off' || value === '0') return 0;
  const match = /^(\d+)\s*([smh]?)$/.exec(value);
  if (match === null)
    throw new UsageError(`${text} is not a duration: use 30s, 5m, 1h, a number of seconds, or off`);
  const seconds = Number(match[1]) * (UNITS[match[2] ?? ''] ?? 1);
  if (seconds < MESSAGE_TIMER_RANGE.min || seconds > MESSAGE_TIMER_RANGE.max)
    throw new UsageError(
      `a message timer is 5s to 24h, or off (${text} is ${seconds < MESSAGE_TIMER_RANGE.min ? 'shorter' : 'longer'})`,
    );
  return seconds;
}

/** Seconds as people read them: `30s`, `90s`, `5m`, `1h`, `24h`; 0 is `off`. */
export function formatTimer(seconds: number): string {
  if (seconds === 0) return 'off';
  if (seconds % 3_600 === 0) return `${seconds / 3_600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}
