import { Logger } from '@nestjs/common';
import { unwrapResolverError } from '@apollo/server/errors';
import type { ErrorCode } from '@parley/protocol';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { isDatabaseUnavailable } from '../database/errors.js';
import { isTokenLimitError, QUERY_TOO_COMPLEX } from './query-limits.js';
import { DomainError } from './domain.errors.js';

const logger = new Logger('GraphQL');

// Codes Apollo itself assigns to requests that never reached a resolver.
const APOLLO_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_USER_INPUT',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
  'OPERATION_RESOLUTION_FAILURE',
  'BAD_REQUEST',
]);

/**
 * The one place errors become GraphQL errors: domain errors keep their code and details;
 * Apollo's own request errors pass through; anything else is logged (message and stack,
 * never variables) and shown as a bare INTERNAL_SERVER_ERROR.
 */
export function formatGraphqlError(
  formatted: GraphQLFormattedError,
  error: unknown,
  development: boolean,
): GraphQLFormattedError {
  const original = unwrapResolverError(error);
  const stacktrace = development ? formatted.extensions?.stacktrace : undefined;
  const base = { locations: formatted.locations, path: formatted.path };
  if (original instanceof DomainError) {
    return {
      ...base,
      message: original.message,
      extensions: {
        code: original.code,
        ...original.details,
        ...(stacktrace ? { stacktrace } : {}),
      },
    };
  }
  if (isDatabaseUnavailable(original)) {
    // Not a bug and not the client's fault: say so, briefly, and let the client retry.
    logger.warn(`Database unavailable: ${(original as Error).message}`);
    return {
      ...base,
      message: 'The service is briefly unavailable; retry shortly',
      extensions: { code: 'SERVICE_UNAVAILABLE' satisfies ErrorCode, retryable: true },
    };
  }
  if (isTooComplex(formatted, error)) {
    return { ...base, message: formatted.message, extensions: { code: QUERY_TOO_COMPLEX } };
  }
  const code = formatted.extensions?.code;
  if (typeof code === 'string' && APOLLO_CODES.has(code)) {
    return { ...base, message: formatted.message, extensions: { code } };
  }
  if ((code === undefined || code === 'INTERNAL_SERVER_ERROR') && isBadRequest(error)) {
    // Apollo refuses some requests (a persisted query's hash that does not match) with HTTP 400
    // and no code: the client's fault, so a code it can act on.
    return {
      ...base,
      message: formatted.message,
      extensions: { code: 'BAD_REQUEST' satisfies ErrorCode },
    };
  }
  logger.error(
    original instanceof Error ? (original.stack ?? original.message) : 'Non-error thrown',
  );
  return {
    ...base,
    message: development ? formatted.message : 'Internal server error',
    extensions: {
      code: 'INTERNAL_SERVER_ERROR' satisfies ErrorCode,
      ...(stacktrace ? { stacktrace } : {}),
    },
  };
}

/**
 * A refusal of the query-limit rules or of the parser's token limit: Apollo reports them under its
 * own codes (GRAPHQL_VALIDATION_FAILED, GRAPHQL_PARSE_FAILED), graphql-ws with ours.
 */
function isTooComplex(formatted: GraphQLFormattedError, error: unknown): boolean {
  if (formatted.extensions?.code === QUERY_TOO_COMPLEX) return true;
  if (isTokenLimitError(formatted.message)) return true;
  const cause = error instanceof GraphQLError ? error.originalError : undefined;
  return cause instanceof GraphQLError && cause.extensions.code === QUERY_TOO_COMPLEX;
}

/** An error Apollo raised itself with an HTTP 4xx status. */
function isBadRequest(error: unknown): boolean {
  if (!(error instanceof GraphQLError)) return false;
  const status = (error.extensions.http as { status?: unknown } | undefined)?.status;
  return typeof status === 'number' && status >= 400 && status < 500;
}
