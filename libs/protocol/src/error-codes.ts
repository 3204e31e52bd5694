/**
 * Every code the server puts in a GraphQL error's `extensions.code` (and in the same shape on
 * plain HTTP errors). The server's domain errors are typed by {@link DomainErrorCode}; the SDK
 * maps each {@link ErrorCode} to an error class, and the compiler sees a code added here.
 */

/** Codes of the server's domain errors: failures the client caused or can act on. */
export const DOMAIN_ERROR_CODES = [
  'BAD_USER_INPUT',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'CONFLICT',
  'LIMIT_EXCEEDED',
  'RATE_LIMITED',
  'INVALID_KEY_PACKAGE',
  'NOT_A_MEMBER',
  'STALE_EPOCH',
  'FUTURE_EPOCH',
  'INVALID_COMMIT',
  'INVALID_GROUP_INFO',
  'INVALID_WELCOME',
  'INVALID_MESSAGE',
  'EXTERNAL_COMMIT_UNSUPPORTED',
  // A DIRECT conversation of the pair exists; `extensions.conversationId` names it.
  'DIRECT_CONVERSATION_EXISTS',
  // Demoting the last admin of a group that keeps other users.
  'LAST_ADMIN',
  'DEVICE_REVOKED',
  'SERVICE_UNAVAILABLE',
  // A live stream ended early; the client resumes from its cursors.
  'EVENTS_UNAVAILABLE',
  'SLOW_CONSUMER',
] as const;

/**
 * Codes of requests refused before any domain code ran (by HTTP, the GraphQL parser, validation
 * or the query limits), and of the server's own failures (`INTERNAL_SERVER_ERROR`).
 */
export const REQUEST_ERROR_CODES = [
  'BAD_REQUEST',
  'REQUEST_TIMEOUT',
  'QUERY_TOO_COMPLEX',
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
  'OPERATION_RESOLUTION_FAILURE',
  'INTERNAL_SERVER_ERROR',
] as const;

/** Every code the server sends, domain and request codes together. */
export const ERROR_CODES = [...DOMAIN_ERROR_CODES, ...REQUEST_ERROR_CODES] as const;

/** A code of the server's domain errors. */
export type DomainErrorCode = (typeof DOMAIN_ERROR_CODES)[number];
/** A code of a request refused before the domain, or of a server failure. */
export type RequestErrorCode = (typeof REQUEST_ERROR_CODES)[number];
/** Any code the server sends in `extensions.code`. */
export type ErrorCode = (typeof ERROR_CODES)[number];

const KNOWN: ReadonlySet<string> = new Set(ERROR_CODES);

/** Whether a value (say, a response's `extensions.code`) is a code the server sends. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && KNOWN.has(value);
}
