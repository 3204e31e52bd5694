/**
 * @parley/engine-openmls: Parley's MLS engine over OpenMLS in WebAssembly (@wireapp/core-crypto
 * 10.3.0). GPL-3.0-only, kept out of the MIT SDK: @parley/client never imports it statically and
 * loads it by name. Importing it loads nothing; core-crypto is initialised on the first engine.
 */
export { OpenMlsEngine } from './engine.js';
export {
  DEFAULT_CIPHERSUITE,
  OpenMlsEngineFactory,
  SUPPORTED_CIPHERSUITES,
  createOpenMlsEngineFactory,
  type OpenMlsEngineOptions,
} from './factory.js';
export { DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS } from './key-packages.js';
export { OpenMlsEngineError, type OpenMlsEngineErrorCode } from './errors.js';
export type { LoadOptions } from './core-crypto.js';
