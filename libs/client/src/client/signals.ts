import type { Envelope } from '../content/envelope.js';
import { unrefTimer } from './timers.js';

/** Typing indicators go out at most this often per conversation (a held key sends one per 3 s). */
export const TYPING_INTERVAL_MS = 3_000;

/**
 * Read receipts go out at most this often per conversation: a reader of a busy conversation
 * marks read after every message, and each receipt costs the sender's message budget.
 */
export const RECEIPT_INTERVAL_MS = 1_000;

/** A member device is typing in a conversation (heard live; never stored anywhere). */
export interface TypingSignal {
  conversationId: string;
  userId: string;
  deviceId: string;
}

/** A member device has read a conversation's log up to `seq` (heard live; never stored). */
export interface ReceiptSignal extends TypingSignal {
  seq: number;
}

/**
 * The listeners of ephemeral signals, and the one place that turns a decrypted signal envelope
 * into an event: typing and receipts are not messages, so they never reach history, unread
 * counts, the outbox or the saved state.
 */
export class SignalListeners {
  private readonly typing = new Set<(signal: TypingSignal) => void>();
  private readonly receipts = new Set<(signal: ReceiptSignal) => void>();

  constructor(private readonly report: (error: unknown) => void) {}

  /** Adds a typing listener; returns its unsubscriber. */
  onTyping(listener: (signal: TypingSignal) => void): () => void {
    this.typing.add(listener);
    return () => this.typing.delete(listener);
  }

  /** Adds a receipt listener; returns its unsubscriber. */
  onReceipt(listener: (signal: ReceiptSignal) => void): () => void {
    this.receipts.add(listener);
    return () => this.receipts.delete(listener);
  }

  /** Tells the listeners of a signal envelope; other envelope types are not signals (false). */
  dispatch(from: TypingSignal, envelope: Envelope): boolean {
    if (envelope.type === 'typing') {
      this.tell(this.typing, from);
      return true;
    }
    if (envelope.type === 'receipt') {
      // A receipt without a seq says nothing: dropped, like any envelope this SDK cannot read.
      if (envelope.seq !== undefined) this.tell(this.receipts, { ...from, seq: envelope.seq });
      return true;
    }
    return false;
  }

  private tell<T>(listeners: Set<(signal: T) => void>, signal: T): void {
    for (const listener of listeners) {
      try {
        listener(signal);
      } catch (error) {
        this.report(error);
      }
    }
  }
}

/** Whether a typing indicator may go out now; remembers when the last one did. */
export class TypingThrottle {
  private last = Number.NEGATIVE_INFINITY;

  constructor(private readonly now: () => number = Date.now) {}

  /** True (and counted as sent) at most once per {@link TYPING_INTERVAL_MS}. */
  take(): boolean {
    const now = this.now();
    if (now - this.last < TYPING_INTERVAL_MS) return false;
    this.last = now;
    return true;
  }
}

/**
 * Coalesces read receipts: the first goes out at once, later ones at most once per
 * {@link RECEIPT_INTERVAL_MS}, each with the newest seq marked meanwhile (one is enough: a
 * receipt says "up to").
 */
export class ReceiptCoalescer {
  private sentAt = Number.NEGATIVE_INFINITY;
  private waiting: number | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly send: (seq: number) => Promise<void>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Receipt "read up to `seq`": now, or with the next one due. */
  push(seq: number): Promise<void> {
    const wait = this.sentAt + RECEIPT_INTERVAL_MS - this.now();
    if (wait <= 0 && this.timer === null) {
      this.sentAt = this.now();
      return this.send(seq);
    }
    this.waiting = Math.max(seq, this.waiting ?? 0);
    if (this.timer === null) {
      this.timer = setTimeout(
        () => {
          this.timer = null;
          const next = this.waiting;
          this.waiting = null;
          if (next === null) return;
          this.sentAt = this.now();
          void this.send(next);
        },
        Math.max(0, wait),
      );
      // A pending receipt never keeps a process alive (browsers' timers are numbers: no unref).
      unrefTimer(this.timer);
    }
    return Promise.resolve();
  }

  /** Drops a receipt still waiting (the client closes). */
  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.waiting = null;
  }
}
