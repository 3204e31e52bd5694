import { DomainError } from '../common/domain.errors.js';

/** The username is already taken. */
export const usernameTaken = () => new DomainError('CONFLICT', 'That username is taken');

/** Wrong username or password; deliberately does not say which. */
export const badCredentials = () =>
  new DomainError('UNAUTHENTICATED', 'Wrong username or password');
