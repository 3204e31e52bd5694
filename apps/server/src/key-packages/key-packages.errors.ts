import { DomainError } from '../common/domain.errors.js';

/** Where a bad key package sits in an upload: its batch index, or the last-resort slot. */
export type KeyPackageSlot = number | 'lastResort';

/** A key package in an upload failed validation; nothing of the batch was stored. */
export const invalidKeyPackage = (slot: KeyPackageSlot, reason: string, message: string) =>
  new DomainError(
    'INVALID_KEY_PACKAGE',
    `Key package ${slot === 'lastResort' ? 'lastResort' : `#${slot}`}: ${message}`,
    { index: slot === 'lastResort' ? null : slot, lastResort: slot === 'lastResort', reason },
  );
