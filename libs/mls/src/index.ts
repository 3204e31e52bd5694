/**
 * @parley/mls: the server's only door to MLS (RFC 9420). Everything crosses it as an MLSMessage;
 * nothing that leaves it is a ts-mls object except through the round-trip pair below.
 */
export { MlsError, type MlsErrorReason } from './errors.js';
export {
  CIPHERSUITE_NAMES,
  SUPPORTED_CIPHERSUITES,
  isSupportedCiphersuite,
  keyPackageRef,
  refHash,
} from './ciphersuites.js';
export {
  DEFAULT_MAX_KEY_PACKAGE_BYTES,
  DEFAULT_MAX_MESSAGE_BYTES,
  decodeMessage,
  encodeMessage,
  type DecodeOptions,
  type MlsMessage,
  type WireFormat,
} from './codec.js';
export {
  validateKeyPackage,
  type KeyPackagePolicy,
  type ValidatedKeyPackage,
} from './key-package.js';
export {
  inspectCommit,
  inspectMessage,
  inspectWelcome,
  type CommitProposal,
  type ContentType,
  type InspectedCommit,
  type InspectedGroupInfoMessage,
  type InspectedKeyPackageMessage,
  type InspectedMessage,
  type InspectedPrivateMessage,
  type InspectedPublicMessage,
  type InspectedWelcome,
  type InspectedWelcomeMessage,
  type MessageSender,
  type PathLeaf,
} from './inspect.js';
export {
  GroupInfoMessage,
  decodeGroupInfo,
  verifyGroupInfo,
  type DecodeGroupInfoOptions,
  verifyGroupInfoMessage,
  type KnownLeaf,
  type RosterLeaf,
  type VerifiedGroupInfo,
  type VerifyGroupInfoMessageOptions,
  type VerifyGroupInfoOptions,
} from './group-info.js';
export {
  CommitMessage,
  decodeCommit,
  knownLeaves,
  verifyCommitSignature,
  verifyConfirmationTag,
  verifyFirstCommitSignature,
  verifyGroupInfoSigner,
  verifyLeafChanges,
  verifyTranscript,
} from './commit.js';
export { checkExternalCommitShape, verifyExternalCommit } from './external-commit.js';
