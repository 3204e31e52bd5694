/** @parley/client: the Parley SDK. */
export type {
  CommitBundle,
  CommitOutcome,
  CommitSender,
  MlsEngine,
  MlsEngineFactory,
  ProcessedMessage,
} from './engine/mls-engine.js';
export * from './errors.js';
export { GraphqlTransport, type TransportOptions } from './transport/graphql-transport.js';
export { ParleyClient, type ParleyClientOptions } from './client/parley-client.js';
export {
  Conversation,
  HistoryGapError,
  type Member,
  type Progress,
  type ReceivedMessage,
  RemovedFromConversationError,
} from './client/conversation.js';
export { MemoryStateStore, type StateStore } from './client/client-state.js';
export { decodeEnvelope, encodeEnvelope, type Envelope, textEnvelope } from './content/envelope.js';
