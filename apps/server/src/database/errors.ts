import {
  QueryFailedError,
  QueryRunnerAlreadyReleasedError,
  QueryRunnerProviderAlreadyReleasedError,
} from 'typeorm';

/** A unique constraint rejected the write (SQLSTATE 23505), on PostgreSQL and PGlite alike. */
export function isUniqueViolation(error: unknown): boolean {
  if (!(error instanceof QueryFailedError)) return false;
  const driverError: unknown = error.driverError;
  return (
    typeof driverError === 'object' &&
    driverError !== null &&
    'code' in driverError &&
    driverError.code === '23505'
  );
}

// SQLSTATE classes and codes that mean "the database is not there right now", not "your query is wrong".
const UNAVAILABLE_SQLSTATES = /^(08|57P0[1-3]|53300)/;
// Errors of pg and pg-pool (and Node's sockets) when the server cannot be reached or stops answering.
const UNAVAILABLE_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|connect ECONNREFUSED|read ECONNRESET/;
const UNAVAILABLE_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
]);

/**
 * Whether an error says the database is unreachable or not answering (down, restarting, frozen,
 * out of connections): the request may succeed if retried shortly, and the client is told so.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  // A connection lost between two statements of a transaction (PostgreSQL killed or restarted
  // after a query answered): pg emits the loss as an event, TypeORM releases the query runner on
  // it, and the next statement or the COMMIT fails with one of these, nothing committed. Found by
  // test/faults.e2e-spec.ts (kill -9 of PostgreSQL); they were INTERNAL_SERVER_ERROR.
  if (
    error instanceof QueryRunnerAlreadyReleasedError ||
    error instanceof QueryRunnerProviderAlreadyReleasedError
  ) {
    return true;
  }
  const cause: unknown = error instanceof QueryFailedError ? error.driverError : error;
  if (typeof cause !== 'object' || cause === null) return false;
  const { code, message } = cause as { code?: unknown; message?: unknown };
  if (
    typeof code === 'string' &&
    (UNAVAILABLE_SQLSTATES.test(code) || UNAVAILABLE_ERRNOS.has(code))
  ) {
    return true;
  }
  return typeof message === 'string' && UNAVAILABLE_MESSAGES.test(message);
}
