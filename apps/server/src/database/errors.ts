import type { QueryFailedError } from 'typeorm';

function sqlState(error: QueryFailedError): unknown {
  const driverError: unknown = error.driverError;
  return typeof driverError === 'object' && driverError !== null && 'code' in driverError
    ? driverError.code
    : undefined;
}

/** A unique constraint rejected the write (SQLSTATE 23505), on PostgreSQL and PGlite alike. */
export function isUniqueViolation(error: QueryFailedError): boolean {
  return sqlState(error) === '23505';
}
