import type { ApolloDriverConfig } from '@nestjs/apollo';
import type { Context, ServerOptions } from 'graphql-ws';
import { bearerToken } from '../auth/auth.guard.js';
import type { TokenService } from '../auth/token.service.js';
import { DomainError } from '../common/domain.errors.js';
import { upgradeRequestAddress } from './client-address.js';
import type { RateLimitService } from './rate-limit.service.js';

/** Close code of a graphql-ws connection refused for a rate limit (HTTP 429's number). */
export const RATE_LIMITED_CLOSE_CODE = 4429;

/** What graphql-ws's `ws` adapter passes as `extra`: the socket and its upgrade request. */
interface WsExtra {
  socket?: { close(code: number, reason: string): void };
  request?: unknown;
}

/** What {@link withConnectionRateLimits} needs besides the options it wraps. */
export interface ConnectionRateLimitsDeps {
  rateLimits: RateLimitService;
  tokens: TokenService;
  /** PARLEY_TRUST_PROXY. */
  trustProxyHops: number;
  /** Told of each refused connection (metrics). */
  onRefused?: (scope: 'connection') => void;
}

function isWebSocketContext(value: unknown): value is Context & { extra: WsExtra } {
  return (
    typeof value === 'object' && value !== null && 'extra' in value && 'subscriptions' in value
  );
}

/**
 * Rate limits on new graphql-ws connections, around whatever the options already do: per client
 * address before anything else (even without a token), then per user once the connection is
 * accepted. A refused socket is closed with 4429 and "Rate limited; retry after N s". Also puts
 * the client address on every graphql-ws operation's context, for the per-address limits of
 * subscriptions (HTTP operations have Fastify's `request.ip`).
 */
export function withConnectionRateLimits(
  options: ApolloDriverConfig,
  deps: ConnectionRateLimitsDeps,
): ApolloDriverConfig {
  const subscriptions = options.subscriptions ?? {};
  const ws = subscriptions['graphql-ws'];
  if (ws === undefined || typeof ws !== 'object') return options;
  const inner = ws as Partial<ServerOptions>;
  // Each connection's address, found once from its upgrade request, which is then let go:
  // graphql-ws would otherwise keep the request (headers and all) for the socket's life.
  const addresses = new WeakMap<Context, string>();
  const addressOf = (ctx: Context) => {
    let address = addresses.get(ctx);
    if (address === undefined) {
      const extra = ctx.extra as WsExtra;
      address = upgradeRequestAddress(extra.request, deps.trustProxyHops);
      addresses.set(ctx, address);
      delete extra.request;
    }
    return address;
  };

  const refuse = (ctx: Context, error: DomainError): false => {
    deps.onRefused?.('connection');
    const retry = String(error.details.retryAfterSeconds ?? 1);
    (ctx.extra as WsExtra).socket?.close(
      RATE_LIMITED_CLOSE_CODE,
      `Rate limited; retry after ${retry} s`,
    );
    return false;
  };
  const isRateLimited = (error: unknown): error is DomainError =>
    error instanceof DomainError && error.code === 'RATE_LIMITED';

  const onConnect: ServerOptions['onConnect'] = async (ctx) => {
    try {
      await deps.rateLimits.consume('connectionsPerAddress', addressOf(ctx));
    } catch (error) {
      if (isRateLimited(error)) return refuse(ctx, error);
      throw error;
    }
    // Read first: the wrapped onConnect takes the token out of the connection params.
    const token = bearerToken({ connectionParams: ctx.connectionParams ?? {} });
    const accepted = inner.onConnect === undefined ? true : await inner.onConnect(ctx);
    if (accepted === false) return false;
    if (token === undefined) return accepted;
    let userId: string;
    try {
      userId = (await deps.tokens.authenticate(token)).userId;
    } catch (error) {
      // Not this wrapper's call: each operation of the socket is refused without a valid token.
      if (error instanceof DomainError) return accepted;
      throw error;
    }
    try {
      await deps.rateLimits.consume('connectionsPerUser', userId);
    } catch (error) {
      if (isRateLimited(error)) return refuse(ctx, error);
      throw error;
    }
    return accepted;
  };

  const context: unknown = options.context;
  const withAddress =
    typeof context === 'function'
      ? // Every argument passes on: graphql-ws adds the operation's id, payload and execution
        // arguments, which tell the live fan-out where a subscription writes its frames.
        async (request: unknown, ...rest: unknown[]): Promise<unknown> => {
          const base: unknown = await (context as (...args: unknown[]) => unknown)(
            request,
            ...rest,
          );
          return isWebSocketContext(request) && typeof base === 'object' && base !== null
            ? { ...base, clientAddress: addressOf(request) }
            : base;
        }
      : context;
  return {
    ...options,
    context: withAddress,
    subscriptions: { ...subscriptions, 'graphql-ws': { ...ws, onConnect } },
  };
}
