export {
  type DeviceIdentity,
  formatIdentity,
  isDeviceId,
  isIdentityDomain,
  isIdentityUserId,
  parseIdentity,
} from './identity.js';
export {
  DOMAIN_ERROR_CODES,
  type DomainErrorCode,
  ERROR_CODES,
  type ErrorCode,
  isErrorCode,
  REQUEST_ERROR_CODES,
  type RequestErrorCode,
} from './error-codes.js';
export { LAST_RESORT_EXTENSION_TYPE } from './extensions.js';
export {
  bytesEqual,
  concatBytes,
  fromBase64,
  fromHex,
  isBase64,
  toBase64,
  toHex,
} from './bytes.js';
export { SerialQueue } from './serial-queue.js';
export { isValidMessageTimer, MESSAGE_TIMER_RANGE } from './message-timer.js';
export { setBounded } from './bounded-map.js';
