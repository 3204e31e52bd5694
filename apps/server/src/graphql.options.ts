import type { ApolloServerPlugin } from '@apollo/server';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import {
  type DocumentNode,
  type ExecutionArgs,
  GraphQLError,
  type GraphQLFormattedError,
  type GraphQLSchema,
  lexicographicSortSchema,
  OperationTypeNode,
  parse,
  specifiedRules,
  validate,
} from 'graphql';
import type { Context, ServerOptions } from 'graphql-ws';
import { formatGraphqlError } from './common/graphql-errors.js';
import {
  isTokenLimitError,
  QUERY_TOO_COMPLEX,
  queryLimitRules,
  queryParseOptions,
} from './common/query-limits.js';
import { bearerToken, type GraphqlContext } from './auth/auth.guard.js';
import {
  type LiveSocket,
  type LiveSockets,
  TOKEN_REVOKED_CLOSE_CODE,
} from './auth/live-sockets.js';
import { DomainError, limitExceeded } from './common/domain.errors.js';
import type { Config } from './config/config.js';
import { isDatabaseUnavailable } from './database/errors.js';
import { assertSharedExecutable, SharedExecution } from './live/shared-execution.js';
import { bindLiveTarget, sharedSubscribe } from './live/shared-subscribe.js';
import type { FrameSocket } from './live/socket-writer.js';

/** graphql-ws hands the context factory its own context, which carries connectionParams. */
function isWebSocketContext(
  value: unknown,
): value is { connectionParams?: Record<string, unknown>; extra: unknown } {
  return (
    typeof value === 'object' && value !== null && 'extra' in value && 'subscriptions' in value
  );
}

/** How an error leaves over graphql-ws: through the one mapping, as over HTTP. */
function graphqlWsErrorFormat(
  config: Pick<Config, 'development'>,
): (error: GraphQLError) => GraphQLFormattedError {
  // An error thrown by a subscription's event stream reaches graphql-ws as is, and graphql-ws
  // wraps it without a path, which hides a domain error from the mapping: unwrap it here.
  return (error) =>
    formatGraphqlError(
      error.toJSON(),
      error.path === undefined && error.originalError != null ? error.originalError : error,
      config.development,
    );
}

/**
 * graphql-ws formats its own results (Apollo's formatError does not see them), so its errors go
 * through the same mapping here. Nest passes these options on to graphql-ws as they are.
 */
function graphqlWsErrorMapping(
  config: Pick<Config, 'development'>,
): Pick<ServerOptions, 'onNext' | 'onError'> {
  const format = graphqlWsErrorFormat(config);
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

/** Whether graphql-ws's socket is a `ws` WebSocket that frames can be written to directly. */
function isFrameSocket(socket: unknown): socket is FrameSocket {
  return (
    typeof socket === 'object' &&
    socket !== null &&
    'send' in socket &&
    'bufferedAmount' in socket &&
    'readyState' in socket
  );
}

/** The query text of a graphql-ws subscribe payload. */
function queryOf(payload: unknown): string {
  return typeof payload === 'object' && payload !== null && 'query' in payload
    ? String(payload.query)
    : '';
}

/** Each accepted graphql-ws connection (its context) as registered with LiveSockets. */
const connections = new WeakMap<object, LiveSocket>();

/** Where a socket is missing from graphql-ws's `extra` (no other adapter is used): nothing. */
const NO_SOCKET = { close: () => undefined };

/**
 * WebSocket's "Try Again Later": the socket could not be checked because the database did not
 * answer. graphql-ws clients reconnect after it, while the 4500 (internal error) graphql-ws would
 * send for a thrown error is one they never retry.
 */
export const TRY_AGAIN_LATER_CLOSE_CODE = 1013;

/**
 * A socket must bring a valid token in connection_init, or it is closed at once: 4401 without
 * one, 4403 (graphql-ws's "Forbidden") with one that does not verify. Each socket is registered by
 * its token, so that revoking that token (signOut, signOutEverywhere, on any instance) or its
 * expiry closes it with 4401.
 *
 * The token is not kept: graphql-ws would hold the connection params for the socket's life, so the
 * token leaves them once read, and the socket's operations are authenticated by what verifying it
 * established (rechecked for expiry and revocation each time, as the token would be).
 */
function graphqlWsConnections(sockets: LiveSockets): Pick<ServerOptions, 'onConnect' | 'onClose'> {
  return {
    onConnect: async (ctx: Context) => {
      const { socket } = ctx.extra as WsExtra;
      const params = ctx.connectionParams as Record<string, unknown> | undefined;
      const token = bearerToken({ connectionParams: params ?? {} });
      if (params !== undefined) delete params.authorization;
      if (token === undefined) {
        socket?.close(
          TOKEN_REVOKED_CLOSE_CODE,
          'Unauthorized: connectionParams needs a bearer token',
        );
        return false;
      }
      try {
        connections.set(ctx, await sockets.register(token, socket ?? NO_SOCKET));
      } catch (error) {
        if (error instanceof DomainError) return false;
        if (isDatabaseUnavailable(error)) {
          socket?.close(TRY_AGAIN_LATER_CLOSE_CODE, 'SERVICE_UNAVAILABLE: retry shortly');
          return false;
        }
        throw error;
      }
      return true;
    },
    onClose: (ctx: Context) => {
      const live = connections.get(ctx);
      if (live === undefined) return;
      connections.delete(ctx);
      sockets.unregister(live);
    },
  };
}

/**
 * graphql-ws bounds each operation as Apollo does over HTTP: the parser's token limit (checked
 * here, where a refusal can be answered as an error rather than by closing the socket), the
 * same validation rules, and at most so many live subscriptions per socket.
 */
function graphqlWsLimits(
  config: Pick<Config, 'queryLimits' | 'limits'>,
  served: ServedSchema,
): Pick<ServerOptions, 'onSubscribe' | 'validate'> {
  const rules = [...specifiedRules, ...queryLimitRules(config.queryLimits)];
  const parseOptions = queryParseOptions(config.queryLimits);
  // Subscribers of one app send the same few documents: parsed and validated once each (a parsed
  // document with its locations is kilobytes, held by every live subscription), not per subscribe.
  const documents = new Map<string, KnownDocument>();
  return {
    onSubscribe: (ctx, _id, payload) => {
      // graphql-ws has already reserved this one's slot in ctx.subscriptions.
      if (Object.keys(ctx.subscriptions).length > config.limits.subscriptionsPerSocket) {
        // The DomainError is what the one error mapping keeps the code and details of.
        const limit = limitExceeded(
          'Operations at once per socket',
          config.limits.subscriptionsPerSocket,
        );
        return [new GraphQLError(limit.message, { originalError: limit })];
      }
      const { schema } = served;
      const known = documents.get(payload.query);
      let document: DocumentNode;
      if (known !== undefined) {
        document = known.document;
        // graphql-ws keeps this payload for the subscription's life: let it hold the one shared
        // copy of the text, so that each subscriber's own copy (half a KiB) is garbage at once.
        (payload as { query: string }).query = known.query;
      } else {
        try {
          document = parse(payload.query, parseOptions);
        } catch (error) {
          if (error instanceof GraphQLError && isTokenLimitError(error.message)) {
            return [new GraphQLError(error.message, { extensions: { code: QUERY_TOO_COMPLEX } })];
          }
          // Other syntax errors: graphql-ws parses again and reports them itself.
          return undefined;
        }
        if (schema === undefined) return undefined;
        // As graphql-ws would answer them (its `error` message); only valid documents are kept.
        const errors = validate(schema, document, rules);
        if (errors.length > 0) return errors;
        if (documents.size >= CACHED_DOCUMENTS) {
          const oldest = documents.keys().next();
          if (oldest.done !== true) documents.delete(oldest.value);
        }
        documents.set(payload.query, { query: payload.query, document });
      }
      if (schema === undefined) return undefined;
      return {
        schema,
        document,
        operationName: payload.operationName,
        variableValues: payload.variables,
      };
    },
    validate: (schema, document) => validate(schema, document, rules),
  };
}

/** Distinct valid documents kept parsed for graphql-ws; the oldest goes first. */
const CACHED_DOCUMENTS = 64;

/** A valid document as parsed once, with the query text it was parsed from (its map key). */
interface KnownDocument {
  query: string;
  document: DocumentNode;
}

/** The schema Apollo serves, once built (Nest builds it after these options). */
interface ServedSchema {
  schema?: GraphQLSchema;
}

/**
 * The `events` subscription is executed and serialised once per event for all its subscribers,
 * and written to each socket with the subscriber's own id (live/shared-subscribe.ts).
 */
function graphqlWsDelivery(config: Pick<Config, 'development'>): Pick<ServerOptions, 'subscribe'> {
  const format = graphqlWsErrorFormat(config);
  return { subscribe: sharedSubscribe(new SharedExecution((errors) => errors.map(format))) };
}

/**
 * A subscription posted over HTTP would run its resolver and fail to serialise the stream it
 * returns: refuse it up front, saying where subscriptions are served.
 */
const subscriptionsOverWebSocketOnly: ApolloServerPlugin = {
  requestDidStart() {
    return Promise.resolve({
      didResolveOperation({ operation }) {
        if (operation?.operation === OperationTypeNode.SUBSCRIPTION) {
          throw new GraphQLError('Subscriptions are served over graphql-ws on /graphql, not HTTP', {
            extensions: { code: 'BAD_REQUEST', http: { status: 400, headers: new Map() } },
          });
        }
        return Promise.resolve();
      },
    });
  },
};

/** Code-first GraphQL on Apollo (over Fastify), the schema printed sorted and stable. */
export function graphqlOptions(
  config: Pick<Config, 'development' | 'queryLimits' | 'limits'>,
  sockets: LiveSockets,
): ApolloDriverConfig {
  const served: ServedSchema = {};
  return {
    driver: ApolloDriver,
    autoSchemaFile: true,
    path: '/graphql',
    introspection: true,
    // Nest's GraphiQL page loads its scripts from a public CDN; Parley serves nothing that
    // fetches from elsewhere. Use any GraphQL client against /graphql.
    graphiql: false,
    includeStacktraceInErrorResponses: config.development,
    formatError: (formatted, error) => formatGraphqlError(formatted, error, config.development),
    parseOptions: queryParseOptions(config.queryLimits),
    plugins: [subscriptionsOverWebSocketOnly],
    validationRules: queryLimitRules(config.queryLimits),
    // Subscriptions over graphql-ws on the same path; the token travels in connectionParams (and
    // is dropped from them once the connection is authenticated).
    subscriptions: {
      'graphql-ws': {
        path: '/graphql',
        ...graphqlWsErrorMapping(config),
        ...graphqlWsConnections(sockets),
        ...graphqlWsLimits(config, served),
        ...graphqlWsDelivery(config),
      },
    },
    // Sorted here rather than by `sortSchema`, which would sort after this hook and so serve
    // another object than the one graphql-ws's cached documents are validated against.
    sortSchema: false,
    transformSchema: (schema) => {
      // Refuses at boot a schema whose event types could answer differently per subscriber.
      assertSharedExecutable(schema);
      served.schema = lexicographicSortSchema(schema);
      return served.schema;
    },
    context: (
      request: unknown,
      id?: unknown,
      payload?: unknown,
      execArgs?: ExecutionArgs,
    ): GraphqlContext => {
      if (!isWebSocketContext(request)) return { req: request as GraphqlContext['req'] };
      // graphql-ws calls this per operation with its id, payload and execution arguments:
      // where an `events` subscription writes its frames.
      const { socket } = request.extra as WsExtra;
      if (typeof id === 'string' && execArgs !== undefined && isFrameSocket(socket)) {
        bindLiveTarget(execArgs, { id, socket, query: queryOf(payload) });
      }
      return {
        connectionParams: request.connectionParams ?? {},
        credential: connections.get(request)?.credential,
      };
    },
  };
}
