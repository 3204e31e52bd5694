import type { Context, ServerOptions } from 'graphql-ws';
import { describe, expect, it } from 'vitest';
import type { GraphqlContext } from './auth/auth.guard.js';
import type { ClosableSocket, LiveSocket, LiveSockets } from './auth/live-sockets.js';
import type { TokenCredential } from './auth/token.service.js';
import { unauthenticated } from './common/domain.errors.js';
import { loadConfig } from './config/config.js';
import { graphqlOptions } from './graphql.options.js';

const credential: TokenCredential = {
  principal: { userId: 'u1', tokenId: 't1', expiresAt: new Date(Date.now() + 60_000) },
  expiresAt: Math.floor(Date.now() / 1000) + 60,
  external: false,
  generation: 0,
  issuedAt: undefined,
};

/** LiveSockets that accept the token `good` only, and record what they were given. */
function fakeSockets() {
  const registered: { token: string; socket: ClosableSocket }[] = [];
  const unregistered: LiveSocket[] = [];
  const sockets = {
    register: (token: string, socket: ClosableSocket): Promise<LiveSocket> => {
      if (token !== 'good') return Promise.reject(unauthenticated('does not verify'));
      registered.push({ token, socket });
      return Promise.resolve({ credential, socket });
    },
    unregister: (live: LiveSocket) => {
      unregistered.push(live);
    },
  };
  return { sockets: sockets as unknown as LiveSockets, registered, unregistered };
}

/** graphql-ws's context of one connection, as its `ws` adapter makes it. */
function connection(connectionParams: Record<string, unknown>) {
  const closed: [number, string][] = [];
  const socket = {
    close: (code: number, reason: string) => {
      closed.push([code, reason]);
    },
  };
  const ctx = {
    connectionInitReceived: true,
    acknowledged: false,
    subscriptions: {},
    extra: { socket },
    connectionParams,
  } as unknown as Context;
  return { ctx, socket, closed };
}

function hooks(sockets: LiveSockets) {
  const options = graphqlOptions(loadConfig({}), sockets);
  const ws = options.subscriptions?.['graphql-ws'] as ServerOptions;
  const context = options.context as (request: unknown) => GraphqlContext;
  return { ws, context };
}

describe('graphql-ws connections', () => {
  it('keeps no bearer token once the socket is accepted; its operations get the credential', async () => {
    const { sockets, registered, unregistered } = fakeSockets();
    const { ws, context } = hooks(sockets);
    const { ctx, socket } = connection({ authorization: 'Bearer good', locale: 'en' });
    expect(await ws.onConnect?.(ctx)).toBe(true);
    expect(registered).toEqual([{ token: 'good', socket }]);
    expect(ctx.connectionParams).toEqual({ locale: 'en' });
    expect(JSON.stringify(ctx)).not.toContain('good');
    const operation = context(ctx);
    expect(operation.credential).toBe(credential);
    expect(operation.connectionParams).toEqual({ locale: 'en' });

    await ws.onClose?.(ctx, 1000, '');
    expect(unregistered).toEqual([{ credential, socket }]);
    expect(context(ctx).credential).toBeUndefined();
  });

  it('refuses a socket without a token or with one that does not verify, keeping neither', async () => {
    const { sockets, registered } = fakeSockets();
    const { ws, context } = hooks(sockets);
    const missing = connection({});
    expect(await ws.onConnect?.(missing.ctx)).toBe(false);
    expect(missing.closed).toEqual([[4401, 'Unauthorized: connectionParams needs a bearer token']]);

    const forged = connection({ authorization: 'Bearer forged' });
    expect(await ws.onConnect?.(forged.ctx)).toBe(false);
    expect(forged.ctx.connectionParams).toEqual({});
    expect(context(forged.ctx).credential).toBeUndefined();
    expect(registered).toEqual([]);
  });
});
