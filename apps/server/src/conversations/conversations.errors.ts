import { DomainError } from '../common/domain.errors.js';

/** The device is not on the conversation's roster (or the conversation is not its to see). */
export const notAMember = () =>
  new DomainError('NOT_A_MEMBER', 'This device is not a member of the conversation');

/** A commit for an epoch the server has moved past; the client must catch up first. */
export const staleEpoch = (currentEpoch: string) =>
  new DomainError('STALE_EPOCH', `The conversation is at epoch ${currentEpoch}`, {
    currentEpoch: Number(currentEpoch),
  });

/** A commit for an epoch the server has not reached. */
export const futureEpoch = (currentEpoch: string) =>
  new DomainError('FUTURE_EPOCH', `The conversation is at epoch ${currentEpoch}`, {
    currentEpoch: Number(currentEpoch),
  });

/** The commit is not one the server can accept; `reason` says why. */
export const invalidCommit = (reason: string, message: string) =>
  new DomainError('INVALID_COMMIT', message, { reason });

/** The GroupInfo does not match the commit or does not verify. */
export const invalidGroupInfo = (reason: string, message: string) =>
  new DomainError('INVALID_GROUP_INFO', message, { reason });

/** The Welcome does not address exactly the added key packages. */
export const invalidWelcome = (reason: string, message: string) =>
  new DomainError('INVALID_WELCOME', message, { reason });

/** An application message the server cannot accept. */
export const invalidMessage = (reason: string, message: string) =>
  new DomainError('INVALID_MESSAGE', message, { reason });
