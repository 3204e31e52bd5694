import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  decodeEnvelope,
  encodeEnvelope,
  receiptEnvelope,
  textEnvelope,
  typingEnvelope,
} from '../content/envelope.js';
import {
  RECEIPT_INTERVAL_MS,
  ReceiptCoalescer,
  type ReceiptSignal,
  SignalListeners,
  TYPING_INTERVAL_MS,
  type TypingSignal,
  TypingThrottle,
} from './signals.js';

const from = { conversationId: 'c', userId: 'u', deviceId: 'd' };

describe('signals', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('lets one typing signal out per 3 s', () => {
    let now = 10_000;
    const throttle = new TypingThrottle(() => now);
    expect(throttle.take()).toBe(true);
    now += TYPING_INTERVAL_MS - 1;
    expect(throttle.take()).toBe(false);
    now += 1;
    expect(throttle.take()).toBe(true);
  });

  it('sends the first receipt at once, then the newest seq at most once per second', async () => {
    vi.useFakeTimers();
    const sent: number[] = [];
    const receipts = new ReceiptCoalescer(
      (seq) => {
        sent.push(seq);
        return Promise.resolve();
      },
      () => Date.now(),
    );
    await receipts.push(3);
    await receipts.push(4);
    await receipts.push(6);
    await receipts.push(5);
    expect(sent).toEqual([3]);
    await vi.advanceTimersByTimeAsync(RECEIPT_INTERVAL_MS);
    expect(sent).toEqual([3, 6]);
    await receipts.push(7);
    receipts.cancel();
    await vi.advanceTimersByTimeAsync(RECEIPT_INTERVAL_MS * 2);
    expect(sent).toEqual([3, 6]);
  });

  it('turns typing and receipt envelopes into events, and nothing else', () => {
    const reported: unknown[] = [];
    const listeners = new SignalListeners((error) => reported.push(error));
    const typing: TypingSignal[] = [];
    const receipts: ReceiptSignal[] = [];
    const stop = listeners.onTyping((signal) => typing.push(signal));
    listeners.onReceipt((signal) => receipts.push(signal));
    listeners.onReceipt(() => {
      throw new Error('a listener bug');
    });
    expect(listeners.dispatch(from, typingEnvelope())).toBe(true);
    expect(listeners.dispatch(from, receiptEnvelope(9))).toBe(true);
    expect(listeners.dispatch(from, textEnvelope('hi'))).toBe(false);
    stop();
    listeners.dispatch(from, typingEnvelope());
    expect(typing).toEqual([from]);
    expect(receipts).toEqual([{ ...from, seq: 9 }]);
    expect(reported).toHaveLength(1);
  });

  it("keeps a receipt's seq through the envelope, and drops one that is no seq", () => {
    expect(decodeEnvelope(encodeEnvelope(receiptEnvelope(42))).seq).toBe(42);
    for (const seq of [-1, 1.5, '7', 2 ** 60]) {
      const bytes = new TextEncoder().encode(
        JSON.stringify({ v: 1, type: 'receipt', id: 'x', sentAt: 'now', seq }),
      );
      expect(decodeEnvelope(bytes).seq).toBeUndefined();
    }
    expect(decodeEnvelope(encodeEnvelope(typingEnvelope())).type).toBe('typing');
  });
});
