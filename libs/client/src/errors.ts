import { type ErrorCode, isErrorCode } from '@parley/protocol';

/** Base of every error the SDK throws; `code` is the server's `extensions.code` or the SDK's own. */
export class ParleyError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** Machine-readable facts from the server (`index`, `reason`, `currentEpoch`, …). */
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** No token, or one that does not verify. */
export class UnauthenticatedError extends ParleyError {}
/** The user may not do this (e.g. act for another user's device). */
export class ForbiddenError extends ParleyError {}
/** A direct conversation with that user exists; `conversationId` names it. */
export class DirectConversationExistsError extends ParleyError {
  /** The id of the existing direct conversation. */
  get conversationId(): string {
    return String(this.details.conversationId);
  }
}
/** The change would leave a group with no admin while other users remain. */
export class LastAdminError extends ParleyError {}
/** The named thing does not exist. */
export class NotFoundError extends ParleyError {}
/** A conflicting thing exists (taken username, existing group id). */
export class ConflictError extends ParleyError {}
/** The input is malformed. */
export class BadInputError extends ParleyError {}
/** A size or count limit was exceeded. */
export class LimitExceededError extends ParleyError {}
/** Too many requests; `retryAfterSeconds` says when to try again. */
export class RateLimitedError extends ParleyError {
  /** Seconds until the rate-limit window allows the call again. */
  get retryAfterSeconds(): number {
    return Number(this.details.retryAfterSeconds ?? 1);
  }
}
/** The server refused a key package; `details.index` and `details.reason` say which and why. */
export class InvalidKeyPackageError extends ParleyError {}
/** This device is not (or no longer) on the conversation's roster. */
export class NotAMemberError extends ParleyError {}
/** Another commit won the epoch; catch up from the log and try again. */
export class StaleEpochError extends ParleyError {
  /** The conversation's epoch on the server. */
  get currentEpoch(): number {
    return Number(this.details.currentEpoch);
  }
}
/** The commit is for an epoch the server has not reached. */
export class FutureEpochError extends ParleyError {}
/** The server refused a commit, its GroupInfo or its Welcome. */
export class InvalidCommitError extends ParleyError {}
/** The server refused an application message. */
export class InvalidMessageError extends ParleyError {}
/** This device was deleted (by its user, on any of their devices): it can do nothing more. */
export class DeviceRevokedError extends ParleyError {}
/** Live events stopped (slow consumer, pub/sub lost); resume from the log. */
export class EventsInterruptedError extends ParleyError {}
/** The server could not be reached or answered something that is not GraphQL. */
export class NetworkError extends ParleyError {}
/** The server failed; nothing the client can fix. */
export class ServerError extends ParleyError {}
/** The server (or its database) is unavailable for now; the same call may succeed later. */
export class ServiceUnavailableError extends ParleyError {}

/** The error of a call cut short (or refused) because the client was closed. */
export function closedError(): ParleyError {
  return new ParleyError('CLOSED', 'The client was closed');
}

/**
 * Whether the same call may succeed later without any change: the server could not be reached,
 * was unavailable, or limited the rate (the server marks such answers `retryable`).
 */
export function isRetryable(error: unknown): boolean {
  return (
    error instanceof NetworkError ||
    error instanceof ServiceUnavailableError ||
    error instanceof RateLimitedError ||
    (error instanceof ParleyError && error.details.retryable === true)
  );
}

type ErrorClass = new (
  code: string,
  message: string,
  details: Record<string, unknown>,
) => ParleyError;

// One class per code the server sends: a code added to @parley/protocol fails to compile here
// until it has one.
const byCode: Readonly<Record<ErrorCode, ErrorClass>> = {
  UNAUTHENTICATED: UnauthenticatedError,
  FORBIDDEN: ForbiddenError,
  NOT_FOUND: NotFoundError,
  CONFLICT: ConflictError,
  BAD_USER_INPUT: BadInputError,
  BAD_REQUEST: BadInputError,
  QUERY_TOO_COMPLEX: BadInputError,
  GRAPHQL_VALIDATION_FAILED: BadInputError,
  GRAPHQL_PARSE_FAILED: BadInputError,
  PERSISTED_QUERY_NOT_FOUND: BadInputError,
  PERSISTED_QUERY_NOT_SUPPORTED: BadInputError,
  OPERATION_RESOLUTION_FAILURE: BadInputError,
  // The request did not reach the server whole in time: as a network failure, worth a retry.
  REQUEST_TIMEOUT: NetworkError,
  LIMIT_EXCEEDED: LimitExceededError,
  RATE_LIMITED: RateLimitedError,
  INVALID_KEY_PACKAGE: InvalidKeyPackageError,
  NOT_A_MEMBER: NotAMemberError,
  STALE_EPOCH: StaleEpochError,
  FUTURE_EPOCH: FutureEpochError,
  INVALID_COMMIT: InvalidCommitError,
  INVALID_GROUP_INFO: InvalidCommitError,
  INVALID_WELCOME: InvalidCommitError,
  EXTERNAL_COMMIT_UNSUPPORTED: InvalidCommitError,
  DIRECT_CONVERSATION_EXISTS: DirectConversationExistsError,
  LAST_ADMIN: LastAdminError,
  INVALID_MESSAGE: InvalidMessageError,
  DEVICE_REVOKED: DeviceRevokedError,
  SERVICE_UNAVAILABLE: ServiceUnavailableError,
  SLOW_CONSUMER: EventsInterruptedError,
  EVENTS_UNAVAILABLE: EventsInterruptedError,
  INTERNAL_SERVER_ERROR: ServerError,
};

/** The SDK error for one GraphQL error as the server formats it. */
export function errorFromGraphql(error: {
  message?: unknown;
  extensions?: Record<string, unknown>;
}): ParleyError {
  const { code, ...details } = error.extensions ?? {};
  const message = typeof error.message === 'string' ? error.message : 'Unknown error';
  const codeText = typeof code === 'string' ? code : 'INTERNAL_SERVER_ERROR';
  // A code this SDK does not know (a newer server) is a server error with that code.
  const Class = isErrorCode(codeText) ? byCode[codeText] : ServerError;
  return new Class(codeText, message, details);
}
