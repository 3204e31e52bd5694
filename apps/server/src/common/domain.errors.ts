import type { DomainErrorCode } from '@parley/protocol';

/**
 * Stable error codes clients can switch on; they appear as GraphQL `extensions.code`. The list
 * lives in `@parley/protocol`, which the SDK maps from, so both sides name the same codes.
 */
export type ErrorCode = DomainErrorCode;

/** A failure the client caused or can act on; anything else is an internal error. */
export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra machine-readable facts, such as the index of a bad batch entry. */
    readonly details: Readonly<Record<string, string | number | boolean | null>> = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

/** The caller presented no credentials, or credentials that do not verify. */
export const unauthenticated = (message = 'A valid bearer token is required') =>
  new DomainError('UNAUTHENTICATED', message);

/** The caller is known but may not do this. */
export const forbidden = (message: string) => new DomainError('FORBIDDEN', message);

/** The thing named does not exist (or no longer does). */
export const notFound = (what: string) => new DomainError('NOT_FOUND', `${what} not found`);

/** A client-controlled size or count is over its configured limit. */
export const limitExceeded = (what: string, limit: number) =>
  new DomainError('LIMIT_EXCEEDED', `${what} exceeds the limit of ${limit}`, { limit });
