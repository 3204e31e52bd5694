import { DomainError } from '../common/domain.errors.js';

/** The device was deleted while its subscription was open: it hears nothing more. */
export const deviceRevoked = (deviceId: string) =>
  new DomainError('DEVICE_REVOKED', 'This device was deleted', { deviceId });
