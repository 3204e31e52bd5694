import { MlsError } from '@parley/mls';
import type { DomainError } from './domain.errors.js';

/** Runs an MLS check (libs/mls), turning its MlsError into the domain error the caller names. */
export async function mlsCheck<T>(
  check: () => T | Promise<T>,
  toDomainError: (error: MlsError) => DomainError,
): Promise<T> {
  try {
    return await check();
  } catch (error) {
    if (error instanceof MlsError) throw toDomainError(error);
    throw error;
  }
}
