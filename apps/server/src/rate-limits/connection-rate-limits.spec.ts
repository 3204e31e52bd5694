import type { Context, ServerOptions } from 'graphql-ws';
import { describe, expect, it } from 'vitest';
import type { TokenService } from '../auth/token.service.js';
import { rateLimited, type RateLimitService } from './rate-limit.service.js';
import { withConnectionRateLimits } from './connection-rate-limits.js';

/** A socket's graphql-ws context with its upgrade request from `peer`, behind one proxy. */
function connection(peer: string, forwardedFor: string, authorization?: string) {
  return {
    connectionInitReceived: true,
    acknowledged: false,
    subscriptions: {},
    extra: {
      socket: { close: () => undefined },
      request: { headers: { 'x-forwarded-for': forwardedFor }, socket: { remoteAddress: peer } },
    },
    connectionParams: authorization === undefined ? {} : { authorization },
  } as unknown as Context & { extra: { request?: unknown } };
}

function wrapped(limitUsers: Set<string>) {
  const consumed: [string, string][] = [];
  const rateLimits = {
    consume: (name: string, key: string) => {
      consumed.push([name, key]);
      return name === 'connectionsPerUser' && limitUsers.has(key)
        ? Promise.reject(rateLimited(30_000))
        : Promise.resolve();
    },
  } as unknown as RateLimitService;
  const tokens = {
    authenticate: (token: string) => Promise.resolve({ userId: `user-of-${token}` }),
  } as unknown as TokenService;
  const inner: Partial<ServerOptions> = {
    // As graphql.options.ts does: the token leaves the connection params once read.
    onConnect: (ctx) => {
      delete (ctx.connectionParams as Record<string, unknown>).authorization;
      return true;
    },
  };
  const options = withConnectionRateLimits(
    { subscriptions: { 'graphql-ws': inner }, context: () => ({ base: true }) },
    { rateLimits, tokens, trustProxyHops: 1 },
  );
  const ws = options.subscriptions?.['graphql-ws'] as ServerOptions;
  const context = options.context as (request: unknown) => Promise<Record<string, unknown>>;
  return { ws, context, consumed };
}

describe('withConnectionRateLimits', () => {
  it('limits by address and by user, then lets the upgrade request go; operations keep the address', async () => {
    const { ws, context, consumed } = wrapped(new Set());
    const ctx = connection('10.0.0.1', '203.0.113.7', 'Bearer abc');
    expect(await ws.onConnect?.(ctx)).toBe(true);
    expect(consumed).toEqual([
      ['connectionsPerAddress', '203.0.113.7'],
      ['connectionsPerUser', 'user-of-abc'],
    ]);
    // graphql-ws would hold the request (headers and all) for the socket's life.
    expect(ctx.extra.request).toBeUndefined();
    expect(await context(ctx)).toEqual({ base: true, clientAddress: '203.0.113.7' });
    expect(await context(ctx)).toEqual({ base: true, clientAddress: '203.0.113.7' });
  });

  it('refuses a user over the limit though the wrapped hook took the token out', async () => {
    const closed: unknown[] = [];
    const { ws } = wrapped(new Set(['user-of-abc']));
    const ctx = connection('10.0.0.1', '203.0.113.8', 'Bearer abc');
    (ctx.extra as { socket: { close: unknown } }).socket.close = (...args: unknown[]) =>
      closed.push(args);
    expect(await ws.onConnect?.(ctx)).toBe(false);
    expect(closed).toEqual([[4429, 'Rate limited; retry after 30 s']]);
  });
});
