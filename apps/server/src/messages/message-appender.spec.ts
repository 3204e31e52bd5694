import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DomainError } from '../common/domain.errors.js';
import { checkPending, type PendingMessage } from './message-appender.js';

const valid = (): PendingMessage => ({
  userId: randomUUID(),
  deviceId: randomUUID(),
  conversationId: randomUUID(),
  groupId: new Uint8Array([1, 2, 3]),
  epoch: 4n,
  data: Buffer.from('ciphertext'),
  digest: Buffer.alloc(32, 7),
});

const codeOf = (error: DomainError | null) => error?.code ?? null;

describe('checkPending (what is refused before a message joins a batch)', () => {
  it('lets a well-formed message queue', () => {
    expect(checkPending(valid())).toBeNull();
  });

  it('refuses what would fail inside the batch transaction, as the sender’s error alone', () => {
    const cases: [Partial<PendingMessage>, string][] = [
      [{ conversationId: 'not-a-uuid' }, 'NOT_FOUND'],
      [{ deviceId: '' }, 'BAD_USER_INPUT'],
      [{ deviceId: 'a\0b' }, 'BAD_USER_INPUT'],
      [{ deviceId: 'x'.repeat(256) }, 'BAD_USER_INPUT'],
      [{ epoch: 2n ** 63n }, 'INVALID_MESSAGE'],
      [{ epoch: -1n }, 'INVALID_MESSAGE'],
      [{ data: Buffer.alloc(0) }, 'BAD_USER_INPUT'],
      [{ digest: Buffer.alloc(31) }, 'BAD_USER_INPUT'],
    ];
    for (const [change, code] of cases) {
      const refused = checkPending({ ...valid(), ...change });
      expect(
        refused,
        JSON.stringify(change, (_, v: unknown) => String(v)),
      ).toBeInstanceOf(DomainError);
      expect(codeOf(refused)).toBe(code);
    }
  });

  it('accepts the largest epoch a bigint column holds', () => {
    expect(checkPending({ ...valid(), epoch: 2n ** 63n - 1n })).toBeNull();
  });
});
