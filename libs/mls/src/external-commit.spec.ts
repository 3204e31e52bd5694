import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { MlsMember, flipCommitSignature } from '@parley/mls-member';
import {
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeMlsMessage,
  encodeMlsMessage,
  joinGroupExternal,
  type GroupInfo,
} from 'ts-mls';
import {
  MlsError,
  decodeCommit,
  decodeGroupInfo,
  verifyExternalCommit,
  type MlsErrorReason,
} from './index.js';
import { makeKeyPackage } from './spec-support.js';

async function reasonOf(run: () => unknown): Promise<MlsErrorReason | 'NO_ERROR'> {
  try {
    await run();
    return 'NO_ERROR';
  } catch (error) {
    if (error instanceof MlsError) return error.reason;
    throw error;
  }
}

const member = () => MlsMember.create(`${randomUUID()}:8${randomUUID().slice(0, 15)}@example.com`);

/** Alice's group with Bob; `stored` is its GroupInfo (external_pub and tree) of epoch 1. */
async function twoMembers() {
  const [alice, bob] = await Promise.all([member(), member()]);
  const group = await alice.createGroup(crypto.getRandomValues(new Uint8Array(16)));
  await group.addMembers(await bob.keyPackages(1));
  group.confirmCommit();
  return { stored: await group.groupInfo() };
}

/** An external commit to `stored` by a fresh ts-mls client, and the GroupInfo it leads to. */
async function externalJoin(stored: Uint8Array) {
  const [decoded] = decodeMlsMessage(stored, 0) ?? [];
  if (decoded?.wireformat !== 'mls_group_info') throw new Error('not a GroupInfo');
  const now = Math.floor(Date.now() / 1000);
  const joiner = await makeKeyPackage(1, { notBefore: now - 60, notAfter: now + 3600 });
  const { publicMessage, newState } = await joinGroupExternal(
    decoded.groupInfo,
    joiner.keyPackage,
    joiner.privatePackage,
    false,
    joiner.impl,
  );
  const commit = encodeMlsMessage({
    version: 'mls10',
    wireformat: 'mls_public_message',
    publicMessage,
  });
  const next: GroupInfo = await createGroupInfoWithExternalPubAndRatchetTree(
    newState,
    [],
    joiner.impl,
  );
  const groupInfo = encodeMlsMessage({
    version: 'mls10',
    wireformat: 'mls_group_info',
    groupInfo: next,
  });
  return { commit, groupInfo, identity: joiner.identity };
}

async function verify(stored: Uint8Array, commit: Uint8Array, groupInfo: Uint8Array) {
  return verifyExternalCommit(
    await decodeCommit(commit),
    await decodeGroupInfo(stored),
    await decodeGroupInfo(groupInfo),
  );
}

describe('external commits (RFC 9420 §12.4.3.2) against the stored GroupInfo', () => {
  it('accepts an honest external join and reports the joiner leaf', async () => {
    const { stored } = await twoMembers();
    const join = await externalJoin(stored);
    expect(await verify(stored, join.commit, join.groupInfo)).toBe(2);
  });

  it('refuses a flipped signature, a missing ExternalInit, a GroupInfo of another join, another group', async () => {
    const { stored } = await twoMembers();
    const join = await externalJoin(stored);
    expect(
      await reasonOf(() => verify(stored, flipCommitSignature(join.commit), join.groupInfo)),
    ).toBe('BAD_SIGNATURE');

    const [message] = decodeMlsMessage(join.commit, 0) ?? [];
    if (message?.wireformat !== 'mls_public_message') throw new Error('not a PublicMessage');
    const { content } = message.publicMessage;
    if (content.contentType !== 'commit') throw new Error('not a commit');
    const withoutInit = encodeMlsMessage({
      ...message,
      publicMessage: {
        ...message.publicMessage,
        content: { ...content, commit: { ...content.commit, proposals: [] } },
      },
    });
    expect(await reasonOf(() => verify(stored, withoutInit, join.groupInfo))).toBe(
      'MISSING_EXTERNAL_INIT',
    );

    // Another joiner's GroupInfo does not follow from this commit.
    const other = await externalJoin(stored);
    expect(await reasonOf(() => verify(stored, join.commit, other.groupInfo))).toBe(
      'LEAF_REWRITTEN',
    );

    // A commit to another group's GroupInfo.
    const elsewhere = await twoMembers();
    expect(await reasonOf(() => verify(elsewhere.stored, join.commit, join.groupInfo))).toBe(
      'BAD_SIGNATURE',
    );
  });
});
