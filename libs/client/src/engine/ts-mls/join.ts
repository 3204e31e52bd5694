/**
 * Joining from a Welcome with ts-mls 1.6.4, working around one bug in its tree validation.
 *
 * ts-mls's `validateRatchetTree` demands that every non-blank node on an unmerged leaf's direct
 * path list exactly the same unmerged leaves. RFC 9420 §7.8 only asks that each of them list
 * that leaf. Ordinary groups break the stricter rule: remove two members (the committer's path
 * fills its ancestors), add two (add-only commits carry no path, so the new leaves become
 * unmerged at ancestors of different heights), and every later joiner's `joinGroup` throws
 * "non-blank intermediate node must list leaf node in its unmerged_leaves". libs/mls's
 * group.spec.ts reproduces it.
 *
 * So `joinGroup` runs first, and only when it fails with exactly that error does
 * {@link joinWithRfcTreeCheck} repeat the join: the same steps as ts-mls's
 * `joinGroupWithExtensions` (minus PSKs and resumption, which Parley never uses), with the same
 * checks except that the unmerged-leaves one follows the RFC.
 */
import {
  emptyPskIndex,
  joinGroup,
  type ClientConfig,
  type ClientState,
  type CiphersuiteImpl,
  type GroupContext,
  type KeyPackage,
  type LeafNode,
  type PrivateKeyPackage,
  type RatchetTree,
  type Welcome,
} from 'ts-mls';
import { extensionsSupportedByCapabilities } from 'ts-mls/extension.js';
import {
  ratchetTreeFromExtension,
  verifyGroupInfoConfirmationTag,
  verifyGroupInfoSignature,
} from 'ts-mls/groupInfo.js';
import { makeKeyPackageRef } from 'ts-mls/keyPackage.js';
import { deriveKeySchedule } from 'ts-mls/keySchedule.js';
import { verifyLeafNodeSignature, verifyLeafNodeSignatureKeyPackage } from 'ts-mls/leafNode.js';
import { ValidationError } from 'ts-mls/mlsError.js';
import { verifyParentHashes } from 'ts-mls/parentHash.js';
import { pathToRoot } from 'ts-mls/pathSecrets.js';
import { mergePrivateKeyPaths, toPrivateKeyPath } from 'ts-mls/privateKeyPath.js';
import { findLeafIndex } from 'ts-mls/ratchetTree.js';
import { decodeRequiredCapabilities } from 'ts-mls/requiredCapabilities.js';
import { createSecretTree } from 'ts-mls/secretTree.js';
import { treeHashRoot } from 'ts-mls/treeHash.js';
import { directPath, leafWidth, toLeafIndex, toNodeIndex } from 'ts-mls/treemath.js';
import { firstCommonAncestor } from 'ts-mls/updatePath.js';
import { decryptGroupInfo, decryptGroupSecrets } from 'ts-mls/welcome.js';

/** The message of the ts-mls 1.6.4 error this module works around. */
const STRICT_UNMERGED_ERROR =
  'non-blank intermediate node must list leaf node in its unmerged_leaves';

/** ts-mls `joinGroup`, falling back to {@link joinWithRfcTreeCheck} on its unmerged-leaves bug. */
export async function joinFromWelcome(
  welcome: Welcome,
  keyPackage: KeyPackage,
  privateKeys: PrivateKeyPackage,
  cs: CiphersuiteImpl,
  clientConfig: ClientConfig,
): Promise<ClientState> {
  try {
    // The ratchet tree travels in the GroupInfo extension, so no out-of-band tree is passed.
    return await joinGroup(
      welcome,
      keyPackage,
      privateKeys,
      emptyPskIndex,
      cs,
      undefined,
      undefined,
      clientConfig,
    );
  } catch (error) {
    if (error instanceof ValidationError && error.message === STRICT_UNMERGED_ERROR) {
      return joinWithRfcTreeCheck(welcome, keyPackage, privateKeys, cs, clientConfig);
    }
    throw error;
  }
}

function bytesKey(bytes: Uint8Array): string {
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

async function checkLeafCommon(
  leaf: LeafNode,
  groupContext: GroupContext,
  config: ClientConfig,
): Promise<void> {
  if (!(await config.authService.validateCredential(leaf.credential, leaf.signaturePublicKey))) {
    throw new ValidationError('Could not validate credential');
  }
  const required = groupContext.extensions.find(
    (extension) => extension.extensionType === 'required_capabilities',
  );
  if (required !== undefined) {
    const decoded = decodeRequiredCapabilities(required.extensionData, 0);
    if (decoded === undefined) throw new ValidationError('Could not decode required_capabilities');
    const [caps] = decoded;
    const supported =
      caps.credentialTypes.every((c) => leaf.capabilities.credentials.includes(c)) &&
      caps.extensionTypes.every((e) => leaf.capabilities.extensions.includes(e)) &&
      caps.proposalTypes.every((p) => leaf.capabilities.proposals.includes(p));
    if (!supported) throw new ValidationError('LeafNode does not support required capabilities');
  }
  if (!extensionsSupportedByCapabilities(leaf.extensions, leaf.capabilities)) {
    throw new ValidationError('LeafNode contains extension not listed in capabilities');
  }
}

/**
 * ts-mls's `validateRatchetTree`, check for check, except that an unmerged leaf need only be
 * listed by every non-blank node between it and the parent that lists it (RFC 9420 §7.8).
 */
export async function validateRatchetTreeRfc(
  tree: RatchetTree,
  groupContext: GroupContext,
  config: ClientConfig,
  cs: CiphersuiteImpl,
): Promise<void> {
  const width = leafWidth(tree.length);
  const hpkeKeys = new Set<string>();
  const signatureKeys = new Set<string>();
  const credentialTypes = new Set<string>();
  for (const [index, node] of tree.entries()) {
    if (node === undefined) continue;
    const leafPosition = index % 2 === 0;
    if (leafPosition !== (node.nodeType === 'leaf')) {
      throw new ValidationError('Received Ratchet Tree is not structurally sound');
    }
    if (node.nodeType === 'leaf') {
      const { leaf } = node;
      const hpkeKey = bytesKey(leaf.hpkePublicKey);
      if (hpkeKeys.has(hpkeKey)) throw new ValidationError('hpke keys not unique');
      hpkeKeys.add(hpkeKey);
      const signatureKey = bytesKey(leaf.signaturePublicKey);
      if (signatureKeys.has(signatureKey)) throw new ValidationError('signature keys not unique');
      signatureKeys.add(signatureKey);
      credentialTypes.add(leaf.credential.credentialType);
      // Leaves from key packages were signed without the group; the others with it.
      const signed =
        leaf.leafNodeSource === 'key_package'
          ? await verifyLeafNodeSignatureKeyPackage(leaf, cs.signature)
          : await verifyLeafNodeSignature(leaf, groupContext.groupId, index / 2, cs.signature);
      if (!signed) throw new ValidationError('Could not verify leaf node signature');
      if (
        leaf.leafNodeSource === 'key_package' &&
        config.lifetimeConfig.validateLifetimeOnReceive
      ) {
        const now = BigInt(Math.floor(Date.now() / 1000));
        if (leaf.lifetime.notBefore > now || leaf.lifetime.notAfter < now) {
          throw new ValidationError('Current time not within Lifetime');
        }
      }
      await checkLeafCommon(leaf, groupContext, config);
      continue;
    }
    const hpkeKey = bytesKey(node.parent.hpkePublicKey);
    if (hpkeKeys.has(hpkeKey)) throw new ValidationError('hpke keys not unique');
    hpkeKeys.add(hpkeKey);
    for (const unmerged of node.parent.unmergedLeaves) {
      const leafNodeIndex = toNodeIndex(2 * unmerged);
      if (tree[leafNodeIndex]?.nodeType !== 'leaf') {
        throw new ValidationError(
          'Unmerged leaf did not represent a non-blank descendant leaf node',
        );
      }
      const path = directPath(leafNodeIndex, width);
      const position = path.indexOf(toNodeIndex(index));
      if (position < 0) {
        throw new ValidationError(
          'Unmerged leaf did not represent a non-blank descendant leaf node',
        );
      }
      for (const between of path.slice(0, position)) {
        const intermediate = tree[between];
        if (
          intermediate?.nodeType === 'parent' &&
          !intermediate.parent.unmergedLeaves.includes(unmerged)
        ) {
          throw new ValidationError('non-blank intermediate node must list leaf node');
        }
      }
    }
  }
  for (const node of tree) {
    if (node?.nodeType !== 'leaf') continue;
    for (const type of credentialTypes) {
      if (!node.leaf.capabilities.credentials.some((c) => c === type)) {
        throw new ValidationError(
          'LeafNode has credential that is not supported by member of the group',
        );
      }
    }
  }
  if (!(await verifyParentHashes(tree, cs.hash))) {
    throw new ValidationError('Unable to verify parent hash');
  }
  if (!bytesEqual(groupContext.treeHash, await treeHashRoot(tree, cs.hash))) {
    throw new ValidationError('Unable to verify tree hash');
  }
}

/**
 * Joins from a Welcome like ts-mls's `joinGroupWithExtensions`, with the tree validated by
 * {@link validateRatchetTreeRfc}. Welcomes that need PSKs are refused.
 */
export async function joinWithRfcTreeCheck(
  welcome: Welcome,
  keyPackage: KeyPackage,
  privateKeys: PrivateKeyPackage,
  cs: CiphersuiteImpl,
  clientConfig: ClientConfig,
): Promise<ClientState> {
  const ref = await makeKeyPackageRef(keyPackage, cs.hash);
  const initKey = await cs.hpke.importPrivateKey(privateKeys.initPrivateKey);
  const groupSecrets = await decryptGroupSecrets(initKey, ref, welcome, cs.hpke);
  if (groupSecrets === undefined) throw new ValidationError('Could not decode group secrets');
  if (groupSecrets.psks.length > 0)
    throw new ValidationError('Welcomes with PSKs are not supported');
  const pskSecret = new Uint8Array(cs.kdf.size);
  const groupInfo = await decryptGroupInfo(welcome, groupSecrets.joinerSecret, pskSecret, cs);
  if (groupInfo === undefined) throw new ValidationError('Could not decode group info');
  const context = groupInfo.groupContext;
  if (!extensionsSupportedByCapabilities(context.extensions, keyPackage.leafNode.capabilities)) {
    throw new ValidationError('client does not support every extension in the GroupContext');
  }
  const tree = ratchetTreeFromExtension(groupInfo);
  if (tree === undefined) throw new ValidationError('No ratchet_tree extension');
  const signerNode = tree[2 * groupInfo.signer];
  if (signerNode?.nodeType !== 'leaf') throw new ValidationError('Could not find signer leafNode');
  const { leaf: signer } = signerNode;
  if (
    !(await clientConfig.authService.validateCredential(
      signer.credential,
      signer.signaturePublicKey,
    ))
  ) {
    throw new ValidationError('Could not validate credential');
  }
  if (!(await verifyGroupInfoSignature(groupInfo, signer.signaturePublicKey, cs.signature))) {
    throw new ValidationError('Could not verify groupInfo signature');
  }
  if (context.cipherSuite !== keyPackage.cipherSuite) {
    throw new ValidationError('cipher suite in the GroupInfo does not match the KeyPackage');
  }
  await validateRatchetTreeRfc(tree, context, clientConfig, cs);
  const ownLeaf = findLeafIndex(tree, keyPackage.leafNode);
  if (ownLeaf === undefined) throw new ValidationError('Could not find own leaf in the tree');
  const leafPath = {
    leafIndex: ownLeaf,
    privateKeys: { [2 * ownLeaf]: privateKeys.hpkePrivateKey },
  };
  // The committer encrypted a path secret for our common ancestor; from it, every key above.
  const privatePath =
    groupSecrets.pathSecret === undefined
      ? leafPath
      : mergePrivateKeyPaths(
          await toPrivateKeyPath(
            await pathToRoot(
              tree,
              firstCommonAncestor(tree, ownLeaf, toLeafIndex(groupInfo.signer)),
              groupSecrets.pathSecret,
              cs.kdf,
            ),
            ownLeaf,
            cs,
          ),
          leafPath,
        );
  const [keySchedule, encryptionSecret] = await deriveKeySchedule(
    groupSecrets.joinerSecret,
    pskSecret,
    context,
    cs.kdf,
  );
  if (
    !(await verifyGroupInfoConfirmationTag(groupInfo, groupSecrets.joinerSecret, pskSecret, cs))
  ) {
    throw new ValidationError('Could not verify confirmation tag');
  }
  const secretTree = await createSecretTree(leafWidth(tree.length), encryptionSecret, cs.kdf);
  encryptionSecret.fill(0);
  groupSecrets.joinerSecret.fill(0);
  return {
    groupContext: context,
    ratchetTree: tree,
    privatePath,
    signaturePrivateKey: privateKeys.signaturePrivateKey,
    confirmationTag: groupInfo.confirmationTag,
    unappliedProposals: {},
    keySchedule,
    secretTree,
    historicalReceiverData: new Map(),
    groupActiveState: { kind: 'active' },
    clientConfig,
  };
}
