import type { ApolloServerPlugin } from '@apollo/server';
import type { ApolloDriverConfig } from '@nestjs/apollo';
import {
  type GraphQLFormattedError,
  getOperationAST,
  Kind,
  type OperationDefinitionNode,
} from 'graphql';
import type { Context, ServerOptions } from 'graphql-ws';
import { isErrorCode } from '@parley/protocol';
import { requestContext } from '../logging/logger.js';
import type { Metrics } from './metrics.js';

// Codes are those the protocol lists; anything else is bucketed, so that no client can grow the
// label set.
function codeOf(error: GraphQLFormattedError): string {
  const code = error.extensions?.code;
  return isErrorCode(code) ? code : 'OTHER';
}

/**
 * The label of an operation: its one root field (schema-checked by then, so the label set is the
 * schema's), "multiple" for several, never the client-chosen operation name.
 */
export function operationLabel(operation: OperationDefinitionNode | null | undefined): string {
  if (operation == null) return '(unresolved)';
  let name: string | undefined;
  for (const selection of operation.selectionSet.selections) {
    if (selection.kind !== Kind.FIELD || selection.name.value === '__typename') continue;
    if (name !== undefined && name !== selection.name.value) return 'multiple';
    name = selection.name.value;
  }
  return name ?? '(none)';
}

/** Counts errors by code, and rate-limit refusals; returns the first code, or OK. */
function countErrors(
  metrics: Metrics,
  operation: string,
  errors: readonly GraphQLFormattedError[] | undefined,
  scope = operation,
): string {
  if (errors === undefined || errors.length === 0) return 'OK';
  for (const error of errors) {
    const code = codeOf(error);
    metrics.graphqlErrors.inc({ operation, code });
    if (code === 'RATE_LIMITED') metrics.rateLimitRefusals.inc({ scope });
  }
  return codeOf(errors[0] as GraphQLFormattedError);
}

/**
 * Per HTTP operation: a count by type, root field and outcome code, its latency, its errors by
 * code. The outcome also goes on the request's log line.
 */
export function graphqlMetricsPlugin(metrics: Metrics): ApolloServerPlugin {
  return {
    requestDidStart() {
      const start = performance.now();
      let type = 'unknown';
      let operation = '(unresolved)';
      return Promise.resolve({
        didResolveOperation({ operation: resolved }) {
          type = resolved?.operation ?? 'unknown';
          operation = operationLabel(resolved);
          return Promise.resolve();
        },
        willSendResponse({ response }) {
          const errors =
            response.body.kind === 'single'
              ? response.body.singleResult.errors
              : response.body.initialResult.errors;
          const code = countErrors(metrics, operation, errors);
          metrics.graphqlRequests.inc({ type, operation, code });
          metrics.graphqlDuration.observe({ type, operation }, (performance.now() - start) / 1000);
          const context = requestContext.getStore();
          if (context !== undefined) context.graphql = { type, operation, code };
          return Promise.resolve();
        },
      });
    },
  };
}

type WsHooks = Pick<
  ServerOptions,
  'onConnect' | 'onDisconnect' | 'onOperation' | 'onComplete' | 'onError' | 'onNext'
>;

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

/** An operation graphql-ws is running for a socket. */
interface WsOperation {
  type: string;
  operation: string;
  /** A subscription whose stream is open (counted as running), or a one-off result to come. */
  streaming: boolean;
}

/**
 * graphql-ws's hooks with counting around them: acknowledged sockets, running subscriptions,
 * operations over the socket by outcome, and the errors graphql-ws sends (as formatted by the
 * wrapped hooks, so the codes are the ones clients see). Whatever the wrapped hooks decide stands.
 */
export function meteredGraphqlWs<T extends WsHooks>(hooks: T, metrics: Metrics): T {
  const sockets = new WeakSet<Context>();
  const operations = new WeakMap<Context, Map<string, WsOperation>>();
  const find = (ctx: Context, id: string) => operations.get(ctx)?.get(id);
  return {
    ...hooks,
    onConnect: async (ctx) => {
      const accepted = hooks.onConnect === undefined ? true : await hooks.onConnect(ctx);
      if (accepted !== false) {
        sockets.add(ctx);
        metrics.liveSockets.inc();
      }
      return accepted;
    },
    onDisconnect: async (ctx, code, reason) => {
      if (sockets.delete(ctx)) metrics.liveSockets.dec();
      await hooks.onDisconnect?.(ctx, code, reason);
    },
    onOperation: async (ctx, id, payload, args, result) => {
      const replaced = await hooks.onOperation?.(ctx, id, payload, args, result);
      const ast = getOperationAST(args.document, args.operationName);
      const streaming = isAsyncIterable(replaced ?? result);
      const entry = {
        type: ast?.operation ?? 'unknown',
        operation: operationLabel(ast),
        streaming,
      };
      const byId = operations.get(ctx) ?? new Map<string, WsOperation>();
      byId.set(id, entry);
      operations.set(ctx, byId);
      if (streaming) {
        metrics.liveSubscriptions.inc();
        metrics.graphqlRequests.inc({ type: entry.type, operation: entry.operation, code: 'OK' });
      }
      return replaced;
    },
    onNext: async (ctx, id, payload, args, result) => {
      const replaced = await hooks.onNext?.(ctx, id, payload, args, result);
      const entry = find(ctx, id);
      // The wrapped hook's result is formatted already; graphql-js's has GraphQLErrors.
      const errors =
        replaced == null ? result.errors?.map((error) => error.toJSON()) : replaced.errors;
      const code = countErrors(metrics, entry?.operation ?? '(unresolved)', errors);
      // A one-off result (a query over the socket, or a subscription refused when it started).
      if (entry !== undefined && !entry.streaming) {
        metrics.graphqlRequests.inc({ type: entry.type, operation: entry.operation, code });
      }
      return replaced;
    },
    onError: async (ctx, id, payload, errors) => {
      const replaced = await hooks.onError?.(ctx, id, payload, errors);
      const entry = find(ctx, id);
      const operation = entry?.operation ?? '(unresolved)';
      // Refused before it ran (parse, validation, a limit on subscribing): its root field is not
      // known (the document was never checked against the schema), so a rate-limit refusal here
      // is one of subscribing.
      const code = countErrors(
        metrics,
        operation,
        replaced ?? errors.map((e) => e.toJSON()),
        entry === undefined ? 'subscribe' : operation,
      );
      // Counted here, as it never reached onOperation.
      if (entry === undefined) {
        metrics.graphqlRequests.inc({ type: 'unknown', operation, code });
      }
      return replaced;
    },
    onComplete: async (ctx, id, payload) => {
      const entry = find(ctx, id);
      operations.get(ctx)?.delete(id);
      if (entry?.streaming === true) metrics.liveSubscriptions.dec();
      await hooks.onComplete?.(ctx, id, payload);
    },
  };
}

/** Parley's GraphQL options with metrics: the Apollo plugin, and counting graphql-ws hooks. */
export function withGraphqlMetrics(
  options: ApolloDriverConfig,
  metrics: Metrics,
): ApolloDriverConfig {
  const subscriptions = options.subscriptions;
  const graphqlWs = subscriptions?.['graphql-ws'];
  return {
    ...options,
    plugins: [...(options.plugins ?? []), graphqlMetricsPlugin(metrics)],
    ...(subscriptions === undefined || graphqlWs === undefined || typeof graphqlWs === 'boolean'
      ? {}
      : {
          subscriptions: { ...subscriptions, 'graphql-ws': meteredGraphqlWs(graphqlWs, metrics) },
        }),
  };
}
