import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import type { GraphQLError } from 'graphql';
import type { Context, ServerOptions } from 'graphql-ws';
import { formatGraphqlError } from './common/graphql-errors.js';
import { bearerToken, type GraphqlContext } from './auth/auth.guard.js';
import type { LiveSockets } from './auth/live-sockets.js';
import type { Config } from './config/config.js';

/** graphql-ws hands the context factory its own context, which carries connectionParams. */
function isWebSocketContext(
  value: unknown,
): value is { connectionParams?: Record<string, unknown>; extra: unknown } {
  return (
    typeof value === 'object' && value !== null && 'extra' in value && 'subscriptions' in value
  );
}

/**
 * graphql-ws formats its own results (Apollo's formatError does not see them), so its errors go
 * through the same mapping here. Nest passes these options on to graphql-ws as they are.
 */
function graphqlWsErrorMapping(
  config: Pick<Config, 'development'>,
): Pick<ServerOptions, 'onNext' | 'onError'> {
  // An error thrown by a subscription's event stream reaches graphql-ws as is, and graphql-ws
  // wraps it without a path, which hides a domain error from the mapping: unwrap it here.
  const format = (error: GraphQLError) =>
    formatGraphqlError(
      error.toJSON(),
      error.path === undefined && error.originalError != null ? error.originalError : error,
      config.development,
    );
  return {
    onNext: (_ctx, _id, _payload, _args, result) =>
      result.errors === undefined ? undefined : { ...result, errors: result.errors.map(format) },
    onError: (_ctx, _id, _payload, errors) => errors.map(format),
  };
}

/** What graphql-ws (its `ws` adapter) passes as `extra`: the socket, which can be closed. */
interface WsExtra {
  socket?: { close(code: number, reason: string): void };
}

const unregisters = new WeakMap<object, () => void>();

/**
 * Each socket is registered by the token it was opened with, so that revoking that token
 * (signOut, signOutEverywhere, on any instance) closes it at once with 4401 "Token revoked".
 */
function graphqlWsConnections(sockets: LiveSockets): Pick<ServerOptions, 'onConnect' | 'onClose'> {
  return {
    onConnect: async (ctx: Context) => {
      const extra = ctx.extra as WsExtra;
      const socket = extra.socket;
      if (socket === undefined) return true;
      unregisters.set(
        ctx,
        await sockets.register(
          bearerToken({ connectionParams: ctx.connectionParams ?? {} }),
          (code, reason) => {
            socket.close(code, reason);
          },
        ),
      );
      return true;
    },
    onClose: (ctx: Context) => {
      unregisters.get(ctx)?.();
      unregisters.delete(ctx);
    },
  };
}

/** Code-first GraphQL on Apollo (over Fastify), the schema printed sorted and stable. */
export function graphqlOptions(
  config: Pick<Config, 'development'>,
  sockets: LiveSockets,
): ApolloDriverConfig {
  return {
    driver: ApolloDriver,
    autoSchemaFile: true,
    sortSchema: true,
    path: '/graphql',
    introspection: true,
    // Nest's GraphiQL page loads its scripts from a public CDN; Parley serves nothing that
    // fetches from elsewhere. Use any GraphQL client against /graphql.
    graphiql: false,
    includeStacktraceInErrorResponses: config.development,
    formatError: (formatted, error) => formatGraphqlError(formatted, error, config.development),
    // Subscriptions over graphql-ws on the same path; the token travels in connectionParams.
    subscriptions: {
      'graphql-ws': {
        path: '/graphql',
        ...graphqlWsErrorMapping(config),
        ...graphqlWsConnections(sockets),
      },
    },
    context: (request: unknown): GraphqlContext =>
      isWebSocketContext(request)
        ? { connectionParams: request.connectionParams ?? {} }
        : { req: request as GraphqlContext['req'] },
  };
}
