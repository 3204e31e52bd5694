import { isValidMessageTimer, MESSAGE_TIMER_RANGE } from '@parley/protocol';
import type { Envelope } from '../content/envelope.js';
import { BadInputError } from '../errors.js';

export { isValidMessageTimer, MESSAGE_TIMER_RANGE };

/** BadInputError (code BAD_TIMER, `details.field` = 'seconds') unless the timer is valid. */
export function checkMessageTimer(seconds: number): void {
  if (isValidMessageTimer(seconds)) return;
  throw new BadInputError(
    'BAD_TIMER',
    `A message timer is 0 (off) or ${MESSAGE_TIMER_RANGE.min}–${MESSAGE_TIMER_RANGE.max} seconds, not ${String(seconds)}`,
    { field: 'seconds' },
  );
}

/**
 * When a received message must be gone: the earlier of the server's `expiresAt` and storage time
 * plus the timer this device authenticated (from a TIMER entry it decrypted) — a server that
 * claims a longer timer, or none, cannot keep a message alive on members' devices. Null if
 * neither applies.
 */
export function messageExpiry(
  createdAt: Date,
  serverExpiresAt: Date | null,
  authenticatedSeconds: number | null,
): Date | null {
  const own =
    authenticatedSeconds === null || authenticatedSeconds === 0
      ? null
      : new Date(createdAt.getTime() + authenticatedSeconds * 1000);
  if (own === null) return serverExpiresAt;
  if (serverExpiresAt === null) return own;
  return own.getTime() <= serverExpiresAt.getTime() ? own : serverExpiresAt;
}

/** Why a log entry's timer claim is not believed. */
export type ForgeryReason =
  /** A TIMER entry whose encrypted content is no timer change. */
  | 'NOT_A_TIMER'
  /** A TIMER entry whose value differs from the one its sender encrypted. */
  | 'VALUE_MISMATCH'
  /** The MLS credential of the sender is not the device the server names (a relay or an edit). */
  | 'SENDER_MISMATCH'
  /** An APPLICATION entry that carries a timer change: the server hid it. */
  | 'HIDDEN_TIMER';

/**
 * Checks a decrypted log entry against what the server said of it: a TIMER entry is genuine only
 * if its envelope is a `timer` with the same `seconds` and the MLS sender is the device the server
 * names; an APPLICATION entry must not carry a timer. Returns the reason it is forged, or null.
 * A hidden timer from the named device is still that member's genuine change: the caller applies
 * it and reports the server.
 */
export function timerForgery(
  entry: { kind: string; senderDeviceId: string; timerSeconds?: number | null },
  envelope: Envelope | null,
  senderDeviceId: string | null,
): ForgeryReason | null {
  if (entry.kind === 'TIMER') {
    if (envelope?.type !== 'timer' || envelope.seconds === undefined) return 'NOT_A_TIMER';
    if (senderDeviceId !== entry.senderDeviceId) return 'SENDER_MISMATCH';
    if (envelope.seconds !== entry.timerSeconds) return 'VALUE_MISMATCH';
    return null;
  }
  if (envelope?.type === 'timer') {
    return senderDeviceId === entry.senderDeviceId ? 'HIDDEN_TIMER' : 'SENDER_MISMATCH';
  }
  return null;
}

/**
 * Lets a timer not keep the process alive, where timers can (Node); browsers' timers are numbers
 * and have no such notion. Returns the timer.
 */
export function unrefTimer<T>(timer: T): T {
  if (typeof timer === 'object' && timer !== null && 'unref' in timer) {
    (timer as { unref: () => void }).unref();
  }
  return timer;
}

/**
 * One timer for the earliest of many deadlines (the messages' expiries): set again whenever the
 * earliest changes, unref'd so that it never keeps a process alive.
 */
export class ExpiryAlarm {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private at: number | null = null;

  constructor(private readonly fire: () => void) {}

  /** Wakes at `at` (ms since the epoch; at once if past), or never when null. */
  set(at: number | null): void {
    if (at === this.at && this.timer !== null) return;
    this.cancel();
    if (at === null) return;
    this.at = at;
    // setTimeout takes at most 2^31-1 ms; a longer wait wakes early and is set again.
    const delay = Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1);
    const timer = setTimeout(() => {
      this.timer = null;
      this.at = null;
      this.fire();
    }, delay);
    this.timer = unrefTimer(timer);
  }

  /** Stops waiting. */
  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.at = null;
  }
}

/** Splits items by whether their `expiresAt` (ISO or Date) is at or before `now`. */
export function splitExpired<T extends { expiresAt?: Date | string | null }>(
  items: readonly T[],
  now: number,
): { kept: T[]; expired: T[] } {
  const kept: T[] = [];
  const expired: T[] = [];
  for (const item of items) {
    const at = item.expiresAt;
    if (at !== undefined && at !== null && new Date(at).getTime() <= now) expired.push(item);
    else kept.push(item);
  }
  return { kept, expired };
}

/** The earliest `expiresAt` among items (ms), or null. */
export function earliestExpiry(
  items: readonly { expiresAt?: Date | string | null }[],
): number | null {
  let earliest: number | null = null;
  for (const item of items) {
    if (item.expiresAt === undefined || item.expiresAt === null) continue;
    const at = new Date(item.expiresAt).getTime();
    if (earliest === null || at < earliest) earliest = at;
  }
  return earliest;
}
