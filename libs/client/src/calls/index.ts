/** Calls in the SDK: call state, signalling, media keys from MLS and the SFrame transform. */
export {
  CALL_HEARTBEAT_INTERVAL_MS,
  type CallEventInfo,
  type CallInfo,
  type CallMedia,
  Calls,
  type CallSignal,
  type IceServer,
} from './calls.js';
export {
  CallKeys,
  type CallKeysOptions,
  type DecryptedMediaFrame,
  type EpochSource,
  FrameEncryptor,
  PREVIOUS_EPOCH_GRACE_MS,
  type Rekey,
} from './call-keys.js';
export {
  CALL_SFRAME_SUITE,
  crossEngineBaseKey,
  GENERIC_EXPORT_LENGTH,
  GENERIC_EXPORTER_LABEL,
  hkdfExpandSha256,
  KID_EPOCH_BITS,
  type MediaKeySchedule,
  type MlsKidFields,
  mlsKid,
  parseMlsKid,
  SECURITY_CODE_LABEL,
  SFRAME_BASE_KEY_LABEL,
  securityCode,
  senderIndexBits,
} from './media-keys.js';
export {
  createDecryptTransform,
  createEncryptTransform,
  type EncodedFrameLike,
  type FrameTransformOptions,
  vp8ClearBytes,
} from './frame-transform.js';
