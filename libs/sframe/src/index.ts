/**
 * SFrame (RFC 9605) over WebCrypto: end-to-end encryption of media frames, for browsers and
 * Node 20. No dependencies.
 */
export { SFRAME_ERROR_CODES, SFrameError, isSFrameError, type SFrameErrorCode } from './errors.js';
export {
  MAX_UINT64,
  decodeHeader,
  encodeHeader,
  type DecodedHeader,
  type SFrameHeader,
} from './header.js';
export {
  CipherSuite,
  suiteParameters,
  type CipherSuiteId,
  type SuiteParameters,
} from './suites.js';
export {
  deriveSFrameKeyMaterial,
  frameNonce,
  importSFrameKey,
  type SFrameKey,
  type SFrameKeyMaterial,
} from './keys.js';
export {
  DEFAULT_REPLAY_WINDOW,
  ReplayWindow,
  SFrameReceiver,
  SFrameSender,
  encryptFrame,
  type DecryptedFrame,
  type SFrameReceiverOptions,
  type SFrameSenderOptions,
} from './context.js';
