import type { Credential, KeyPackage, LeafNode, Proposal, Sender } from 'ts-mls';
import type { FramedContentAuthDataCommit, FramedContentCommit } from 'ts-mls/framedContent.js';
import { encodeKeyPackage } from 'ts-mls/keyPackage.js';

import { ciphersuiteId, isSupportedCiphersuite } from './ciphersuites.js';
import { copyBytes } from './bytes.js';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  decodeAs,
  decodeMessage,
  resolveMaxBytes,
  type DecodeOptions,
} from './codec.js';
import { MlsError, asMlsError } from './errors.js';
import { keyPackageRefSync } from './hash.js';

/** Who framed a PublicMessage (RFC 9420 §6.1). */
export type MessageSender =
  | { type: 'member'; leafIndex: number }
  | { type: 'external'; senderIndex: number }
  | { type: 'new_member_proposal' }
  | { type: 'new_member_commit' };

/** MLS content types (RFC 9420 §6). */
export type ContentType = 'application' | 'proposal' | 'commit';

/** A PublicMessage's cleartext framing. */
export interface InspectedPublicMessage {
  wireFormat: 'public_message';
  groupId: Uint8Array;
  epoch: bigint;
  contentType: ContentType;
  sender: MessageSender;
}

/** A PrivateMessage's cleartext framing; its content_type travels in the clear too (RFC 9420 §6.3). */
export interface InspectedPrivateMessage {
  wireFormat: 'private_message';
  groupId: Uint8Array;
  epoch: bigint;
  contentType: ContentType;
}

/** A Welcome's cleartext: only the ciphersuite. */
export interface InspectedWelcomeMessage {
  wireFormat: 'welcome';
  ciphersuite: number;
}

/** A GroupInfo's group id, epoch and ciphersuite, unverified. */
export interface InspectedGroupInfoMessage {
  wireFormat: 'group_info';
  groupId: Uint8Array;
  epoch: bigint;
  ciphersuite: number;
}

/** A KeyPackage's ciphersuite, unverified. */
export interface InspectedKeyPackageMessage {
  wireFormat: 'key_package';
  ciphersuite: number;
}

/** What inspectMessage reveals, by wire format. */
export type InspectedMessage =
  | InspectedPublicMessage
  | InspectedPrivateMessage
  | InspectedWelcomeMessage
  | InspectedGroupInfoMessage
  | InspectedKeyPackageMessage;

/** A proposal carried by value in a commit, reduced to what the delivery service acts on. */
export type CommitProposal =
  | {
      type: 'add';
      /** KeyPackageRef of the added key package, computed with its own ciphersuite. */
      keyPackageRef: Uint8Array;
      ciphersuite: number;
      identity: Uint8Array;
      signatureKey: Uint8Array;
    }
  | { type: 'remove'; leafIndex: number }
  | { type: 'update' | 'psk' | 'reinit' | 'external_init' | 'group_context_extensions' }
  | { type: 'custom'; proposalType: number };

/** Identity and key of the leaf a commit's UpdatePath installs for its sender. */
export interface PathLeaf {
  identity: Uint8Array;
  signatureKey: Uint8Array;
}

/** What inspectCommit reveals of a PublicMessage commit; nothing in it is authenticated yet. */
export interface InspectedCommit {
  groupId: Uint8Array;
  epoch: bigint;
  sender: MessageSender;
  /** Proposals carried by value, in order. */
  proposals: CommitProposal[];
  /** ProposalRefs of proposals carried by reference, in order. */
  proposalRefs: Uint8Array[];
  /** The committer's new leaf when the commit has a path (always for external joins). */
  pathLeaf: PathLeaf | null;
}

/** What inspectWelcome reveals. */
export interface InspectedWelcome {
  ciphersuite: number;
  /** KeyPackageRefs (new_member) of the key packages the Welcome is encrypted to, in order. */
  keyPackageRefs: Uint8Array[];
}

function toSender(sender: Sender): MessageSender {
  switch (sender.senderType) {
    case 'member':
      return { type: 'member', leafIndex: sender.leafIndex };
    case 'external':
      return { type: 'external', senderIndex: sender.senderIndex };
    case 'new_member_proposal':
      return { type: 'new_member_proposal' };
    case 'new_member_commit':
      return { type: 'new_member_commit' };
  }
}

/** Identity of a basic credential; Parley knows no other kind. */
export function basicIdentity(credential: Credential): Uint8Array {
  if (credential.credentialType !== 'basic') {
    throw new MlsError('UNSUPPORTED_CREDENTIAL', `credential type ${credential.credentialType}`);
  }
  return copyBytes(credential.identity);
}

function leafIdentity(leaf: LeafNode): PathLeaf {
  return {
    identity: basicIdentity(leaf.credential),
    signatureKey: copyBytes(leaf.signaturePublicKey),
  };
}

/** Peeks at any MLSMessage: wire format and, for group messages, group id, epoch, content type (public only), sender (public only). Rejects trailing bytes. */
export function inspectMessage(bytes: Uint8Array, options: DecodeOptions = {}): InspectedMessage {
  const message = decodeMessage(bytes, options);
  switch (message.wireformat) {
    case 'mls_public_message': {
      const { content } = message.publicMessage;
      return {
        wireFormat: 'public_message',
        groupId: copyBytes(content.groupId),
        epoch: content.epoch,
        contentType: content.contentType,
        sender: toSender(content.sender),
      };
    }
    case 'mls_private_message': {
      const privateMessage = message.privateMessage;
      return {
        wireFormat: 'private_message',
        groupId: copyBytes(privateMessage.groupId),
        epoch: privateMessage.epoch,
        contentType: privateMessage.contentType,
      };
    }
    case 'mls_welcome':
      return { wireFormat: 'welcome', ciphersuite: ciphersuiteId(message.welcome.cipherSuite) };
    case 'mls_group_info': {
      const context = message.groupInfo.groupContext;
      return {
        wireFormat: 'group_info',
        groupId: copyBytes(context.groupId),
        epoch: context.epoch,
        ciphersuite: ciphersuiteId(context.cipherSuite),
      };
    }
    case 'mls_key_package':
      return {
        wireFormat: 'key_package',
        ciphersuite: ciphersuiteId(message.keyPackage.cipherSuite),
      };
  }
}

// RFC 9420 §17.4 proposal types 1..7; ts-mls gives their names to well-formed ones.
const LAST_DEFAULT_PROPOSAL_TYPE = 7;

function addedKeyPackage(keyPackage: KeyPackage): CommitProposal {
  const ciphersuite = ciphersuiteId(keyPackage.cipherSuite);
  if (!isSupportedCiphersuite(ciphersuite)) {
    throw new MlsError(
      'UNSUPPORTED_CIPHERSUITE',
      `added key package of ciphersuite ${ciphersuite}`,
    );
  }
  const { identity, signatureKey } = leafIdentity(keyPackage.leafNode);
  // The whole message was checked to be canonical, so re-encoding yields the bytes the client hashed.
  const ref = keyPackageRefSync(ciphersuite, encodeKeyPackage(keyPackage));
  return { type: 'add', keyPackageRef: ref, ciphersuite, identity, signatureKey };
}

function describeProposal(proposal: Proposal): CommitProposal {
  if (typeof proposal.proposalType === 'number') {
    // ts-mls falls back to "custom" when a default proposal's body fails to decode, so a
    // custom proposal with a default type number is a malformed proposal, not an extension.
    if (proposal.proposalType >= 1 && proposal.proposalType <= LAST_DEFAULT_PROPOSAL_TYPE) {
      throw new MlsError('DECODE', `malformed proposal of type ${proposal.proposalType}`);
    }
    return { type: 'custom', proposalType: proposal.proposalType };
  }
  switch (proposal.proposalType) {
    case 'add':
      return addedKeyPackage(proposal.add.keyPackage);
    case 'remove':
      return { type: 'remove', leafIndex: proposal.remove.removed };
    case 'update':
    case 'psk':
    case 'reinit':
    case 'external_init':
    case 'group_context_extensions':
      return { type: proposal.proposalType };
  }
}

/** @internal What inspectCommit reports of an already decoded commit's content. */
export function describeCommit(content: FramedContentCommit): InspectedCommit {
  const proposals: CommitProposal[] = [];
  const proposalRefs: Uint8Array[] = [];
  for (const entry of content.commit.proposals) {
    if (entry.proposalOrRefType === 'reference') proposalRefs.push(copyBytes(entry.reference));
    else proposals.push(describeProposal(entry.proposal));
  }
  const path = content.commit.path;
  return {
    groupId: copyBytes(content.groupId),
    epoch: content.epoch,
    sender: toSender(content.sender),
    proposals,
    proposalRefs,
    pathLeaf: path === undefined ? null : leafIdentity(path.leafNode),
  };
}

/** @internal Decodes a PublicMessage and insists that it carries a commit. */
export function decodePublicCommit(
  bytes: Uint8Array,
  maxBytes: number,
): { content: FramedContentCommit; auth: FramedContentAuthDataCommit } {
  const { publicMessage } = decodeAs(bytes, 'public_message', maxBytes);
  const { content, auth } = publicMessage;
  if (content.contentType !== 'commit' || auth.contentType !== 'commit') {
    throw new MlsError('WRONG_CONTENT_TYPE', `expected commit, got ${content.contentType}`);
  }
  return { content, auth };
}

/** For a PublicMessage commit: group id, epoch, sender leaf index (member sender) or external, the proposals by value and by reference, with Add proposals' KeyPackageRefs computed and Remove proposals' leaf indexes. */
export function inspectCommit(
  bytes: Uint8Array,
  options: DecodeOptions = {},
): Promise<InspectedCommit> {
  let maxBytes: number;
  try {
    maxBytes = resolveMaxBytes(options.maxBytes, DEFAULT_MAX_MESSAGE_BYTES);
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new TypeError(String(error)));
  }
  try {
    return Promise.resolve(describeCommit(decodePublicCommit(bytes, maxBytes).content));
  } catch (error) {
    return Promise.reject(asMlsError(error, 'DECODE'));
  }
}

/** Decodes an MLSMessage(welcome): ciphersuite and the KeyPackageRefs (new_member) of its secrets. */
export function inspectWelcome(bytes: Uint8Array, options: DecodeOptions = {}): InspectedWelcome {
  const maxBytes = resolveMaxBytes(options.maxBytes, DEFAULT_MAX_MESSAGE_BYTES);
  const { welcome } = decodeAs(bytes, 'welcome', maxBytes);
  return {
    ciphersuite: ciphersuiteId(welcome.cipherSuite),
    keyPackageRefs: welcome.secrets.map((secret) => copyBytes(secret.newMember)),
  };
}
