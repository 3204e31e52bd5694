import { describe, expect, it } from 'vitest';
import { deliverable } from '../live/live.service.js';
import { LogEntryKindValue, type LogEntryModel } from './message.model.js';
import { expiredRanges } from './messages.service.js';

const seqs = (...values: number[]) => values.map((seq) => ({ seq: String(seq) }));

describe('expiredRanges', () => {
  it('names every hole between the cursor and the entries, and up to lastSeq on the last page', () => {
    expect(expiredRanges(2n, seqs(3, 6, 7, 10), 12n)).toEqual([
      { fromSeq: '4', toSeq: '5' },
      { fromSeq: '8', toSeq: '9' },
      { fromSeq: '11', toSeq: '12' },
    ]);
  });

  it('starts with a hole right after the cursor, and says nothing past a page that has more', () => {
    expect(expiredRanges(0n, seqs(4), null)).toEqual([{ fromSeq: '1', toSeq: '3' }]);
  });

  it('is empty for a contiguous page, and is the whole rest for an empty last page', () => {
    expect(expiredRanges(5n, seqs(6, 7, 8), 8n)).toEqual([]);
    expect(expiredRanges(5n, [], 9n)).toEqual([{ fromSeq: '6', toSeq: '9' }]);
    expect(expiredRanges(9n, [], 9n)).toEqual([]);
  });
});

describe('deliverable', () => {
  const entry = (expiresAt: Date | null): { entry: LogEntryModel } => ({
    entry: {
      conversationId: 'c',
      seq: '7',
      kind: LogEntryKindValue.APPLICATION,
      epoch: '1',
      senderDeviceId: 'd',
      createdAt: new Date(0),
      message: Buffer.from('ciphertext'),
      expiresAt,
      timerSeconds: null,
    },
  });

  it('lets an entry out until its expiry, then only a marker in its place, without the bytes', () => {
    const at = new Date(10_000);
    expect(deliverable(entry(at), 9_999)).toEqual(entry(at));
    expect(deliverable(entry(at), 10_000)).toEqual({
      conversationId: 'c',
      expiredFromSeq: '7',
      expiredToSeq: '7',
    });
    expect(deliverable(entry(null), Number.MAX_SAFE_INTEGER)).toEqual(entry(null));
  });
});
