import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { unauthenticated } from '../common/domain.errors.js';
import {
  type ClosableSocket,
  LiveSockets,
  TOKEN_EXPIRED_CLOSE_REASON,
  TOKEN_REVOKED_CLOSE_CODE,
  TOKEN_REVOKED_CLOSE_REASON,
} from './live-sockets.js';
import type { TokenRevocations } from './token-revocations.js';
import type { TokenCredential, TokenService } from './token.service.js';

const START = Date.UTC(2026, 0, 1, 12, 0, 0);
const seconds = (ms: number) => Math.floor(ms / 1000);

/**
 * Tokens named `<user>:<exp seconds>`: what TokenService would establish from them, and which
 * of them are revoked (recheck refuses those, as it refuses expired ones).
 */
class FakeTokens {
  readonly revoked = new Set<string>();
  readonly rechecked: string[] = [];
  private readonly credentials = new Map<string, TokenCredential>();

  authenticateCredential(token: string): Promise<TokenCredential> {
    const [userId = '', exp = '0'] = token.split(':');
    const credential = this.credentials.get(token) ?? {
      principal: { userId, tokenId: token, expiresAt: new Date(Number(exp) * 1000) },
      expiresAt: Number(exp),
      external: false,
      generation: 0,
      issuedAt: undefined,
    };
    this.credentials.set(token, credential);
    return this.recheck(credential).then(() => credential);
  }

  recheck(credential: TokenCredential): Promise<TokenCredential['principal']> {
    this.rechecked.push(credential.principal.tokenId);
    if (credential.expiresAt <= seconds(Date.now())) {
      return Promise.reject(unauthenticated('The bearer token has expired'));
    }
    if (this.revoked.has(credential.principal.tokenId)) {
      return Promise.reject(unauthenticated('The bearer token has been revoked'));
    }
    return Promise.resolve(credential.principal);
  }
}

/** A socket that records how it was closed. */
function socket(): ClosableSocket & { closed: { code: number; reason: string; at: number }[] } {
  const closed: { code: number; reason: string; at: number }[] = [];
  return {
    closed,
    close(code, reason) {
      closed.push({ code, reason, at: Date.now() });
    },
  };
}

describe('LiveSockets', () => {
  let tokens: FakeTokens;
  let revokedListener: (userId: string | null) => void;
  let sockets: LiveSockets;

  beforeEach(() => {
    vi.useFakeTimers({ now: START });
    tokens = new FakeTokens();
    const revocations = {
      onRevoked: (listener: (userId: string | null) => void) => {
        revokedListener = listener;
        return () => undefined;
      },
    };
    sockets = new LiveSockets(
      tokens as unknown as TokenService,
      revocations as unknown as TokenRevocations,
    );
  });

  afterEach(() => {
    sockets.onModuleDestroy();
    vi.useRealTimers();
  });

  const token = (user: string, inSeconds: number) => `${user}:${seconds(START) + inSeconds}`;

  it('closes each socket when its token expires, with one timer for all of them', async () => {
    const early = [socket(), socket(), socket()];
    const late = socket();
    // The later expiry first: the earlier one registered after it must move the timer forward.
    await sockets.register(token('bob', 60), late);
    for (const [index, one] of early.entries()) {
      await sockets.register(token(index === 0 ? 'ana' : 'cat', 30), one);
    }
    expect(vi.getTimerCount()).toBe(1);

    await vi.advanceTimersByTimeAsync(30_000 - 1);
    expect(early.flatMap((one) => one.closed)).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    for (const one of early) {
      expect(one.closed).toEqual([
        { code: TOKEN_REVOKED_CLOSE_CODE, reason: TOKEN_EXPIRED_CLOSE_REASON, at: START + 30_000 },
      ]);
    }
    expect(late.closed).toEqual([]);
    expect(vi.getTimerCount()).toBe(1);

    await vi.advanceTimersByTimeAsync(30_000);
    expect(late.closed).toEqual([
      { code: TOKEN_REVOKED_CLOSE_CODE, reason: TOKEN_EXPIRED_CLOSE_REASON, at: START + 60_000 },
    ]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does not close a socket that went before its token expired, and keeps no timer for it', async () => {
    const gone = socket();
    const stays = socket();
    const live = await sockets.register(token('ana', 10), gone);
    await sockets.register(token('ana', 20), stays);
    sockets.unregister(live);
    sockets.unregister(live);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(gone.closed).toEqual([]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(stays.closed).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);

    const alone = await sockets.register(token('ana', 40), socket());
    sockets.unregister(alone);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('closes a socket whose token lives longer than a timer can wait, at its expiry', async () => {
    const month = 30 * 24 * 3600;
    const one = socket();
    await sockets.register(token('ana', month), one);
    await vi.advanceTimersByTimeAsync(month * 1000 - 1000);
    expect(one.closed).toEqual([]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(one.closed).toMatchObject([{ reason: TOKEN_EXPIRED_CLOSE_REASON }]);
  });

  it('keeps closing sockets on time through many sockets coming and going', async () => {
    const kept = new Map<number, ReturnType<typeof socket>>();
    for (let i = 0; i < 500; i++) {
      const one = socket();
      const live = await sockets.register(token(`u${i % 7}`, 10 + (i % 97)), one);
      if (i % 5 === 0) kept.set(i, one);
      else sockets.unregister(live);
    }
    await vi.advanceTimersByTimeAsync(200_000);
    for (const [i, one] of kept) {
      expect(one.closed).toEqual([
        {
          code: TOKEN_REVOKED_CLOSE_CODE,
          reason: TOKEN_EXPIRED_CLOSE_REASON,
          at: START + (10 + (i % 97)) * 1000,
        },
      ]);
    }
    expect(vi.getTimerCount()).toBe(0);
  });

  it('rechecks a user’s sockets without their tokens when told of a revocation', async () => {
    const revoked = socket();
    const kept = socket();
    const otherUser = socket();
    await sockets.register(token('ana', 100), revoked);
    await sockets.register(`${token('ana', 100)}:second`, kept);
    await sockets.register(token('bob', 100), otherUser);
    tokens.rechecked.length = 0;

    tokens.revoked.add(token('ana', 100));
    revokedListener('ana');
    await vi.advanceTimersByTimeAsync(0);
    expect(tokens.rechecked.sort()).toEqual([token('ana', 100), `${token('ana', 100)}:second`]);
    expect(revoked.closed).toEqual([
      { code: TOKEN_REVOKED_CLOSE_CODE, reason: TOKEN_REVOKED_CLOSE_REASON, at: START },
    ]);
    expect(kept.closed).toEqual([]);
    expect(otherUser.closed).toEqual([]);

    // Revocations missed (the channel was interrupted): every socket checks again.
    tokens.revoked.add(token('bob', 100));
    revokedListener(null);
    await vi.advanceTimersByTimeAsync(0);
    expect(otherUser.closed).toMatchObject([{ reason: TOKEN_REVOKED_CLOSE_REASON }]);
    expect(kept.closed).toEqual([]);

    // A revoked socket is forgotten: its expiry closes nothing more.
    await vi.advanceTimersByTimeAsync(100_000);
    expect(revoked.closed).toHaveLength(1);
    expect(otherUser.closed).toHaveLength(1);
    expect(kept.closed).toMatchObject([{ reason: TOKEN_EXPIRED_CLOSE_REASON }]);
  });

  it('refuses a token that does not verify, registering nothing', async () => {
    tokens.revoked.add(token('ana', 100));
    await expect(sockets.register(token('ana', 100), socket())).rejects.toThrow(/revoked/);
    expect(vi.getTimerCount()).toBe(0);
  });
});
