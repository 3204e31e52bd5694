/** @parley/client: the Parley SDK. */
export type {
  CommitBundle,
  CommitOutcome,
  CommitSender,
  MlsEngine,
  MlsEngineErrorCode,
  MlsEngineFactory,
  ProcessedMessage,
} from './engine/mls-engine.js';
export * from './errors.js';
export { GraphqlTransport, type TransportOptions } from './transport/graphql-transport.js';
export {
  type ConnectionChange,
  type DeviceInfo,
  ParleyClient,
  type ParleyClientOptions,
  type WhoAmI,
} from './client/parley-client.js';
export type { OutgoingMessage } from './client/outbox.js';
export { type ReceiptSignal, TYPING_INTERVAL_MS, type TypingSignal } from './client/signals.js';
export type {
  ConversationKind,
  ConversationMetadata,
  ConversationRole,
  ConversationStatus,
} from './client/client-state.js';
export { normalizeServerUrl } from './transport/server-url.js';
export {
  Conversation,
  type ExpiredMessages,
  ForgedEntryError,
  HistoryGapError,
  LeftConversationError,
  type Member,
  type Progress,
  type ReceivedMessage,
  RemovedFromConversationError,
  type TimerChange,
} from './client/conversation.js';
export {
  checkMessageTimer,
  type ForgeryReason,
  isValidMessageTimer,
  MESSAGE_TIMER_RANGE,
  messageExpiry,
  timerForgery,
} from './client/timers.js';
export { MemoryStateStore, type StateStore } from './client/client-state.js';
export * from './calls/index.js';
export {
  callSignalEnvelope,
  type CallSignalKind,
  decodeEnvelope,
  encodeEnvelope,
  type Envelope,
  type EnvelopeMetadataFields,
  metadataEnvelope,
  receiptEnvelope,
  textEnvelope,
  timerEnvelope,
  typingEnvelope,
} from './content/envelope.js';
export {
  DEFAULT_CIPHERSUITE,
  DEFAULT_KEY_PACKAGE_LIFETIME,
  LAST_RESORT_EXTENSION_TYPE,
  TsMlsEngine,
  TsMlsEngineError,
  type TsMlsEngineErrorCode,
  type TsMlsEngineOptions,
  createTsMlsEngineFactory,
  tsMlsEngineFactory,
} from './engine/ts-mls/index.js';
export {
  DEFAULT_SCRYPT_PARAMS,
  type ScryptParams,
  type SealedStateHeader,
  StateDecryptionError,
  type StateDecryptionFailure,
  type StateKey,
  type StateKeyDerivation,
  decryptState,
  encryptState,
  keyFromBytes,
  keyFromPassphrase,
  newSalt,
  readSealedStateHeader,
} from './state/sealed-state.js';
export { type FileStateSecret, FileStateStore } from './state/file-state-store.js';
export { IndexedDbStateStore } from './state/indexeddb-state-store.js';
