import type { Envelope } from '../content/envelope.js';

/** Typing indicators go out at most this often per conversation (a held key sends one per 3 s). */
export const TYPING_INTERVAL_MS = 3_000;

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
