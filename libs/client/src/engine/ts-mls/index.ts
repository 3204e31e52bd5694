/** The ts-mls engine of the SDK: what @parley/client exports of it. */
export { LAST_RESORT_EXTENSION_TYPE } from '@parley/protocol';
export {
  DEFAULT_CIPHERSUITE,
  TsMlsEngine,
  type TsMlsEngineOptions,
  createTsMlsEngineFactory,
  tsMlsEngineFactory,
} from './engine.js';
export { TsMlsEngineError, type TsMlsEngineErrorCode } from './errors.js';
export { DEFAULT_KEY_PACKAGE_LIFETIME, SUPPORTED_CREDENTIAL_TYPES } from './key-packages.js';
