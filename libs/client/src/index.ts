/** @parley/client: the Parley SDK. */
export type {
  CommitBundle,
  CommitOutcome,
  CommitSender,
  MlsEngine,
  MlsEngineFactory,
  ProcessedMessage,
} from './engine/mls-engine.js';
