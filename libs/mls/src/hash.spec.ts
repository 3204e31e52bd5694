import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { MlsMember } from '@parley/mls-member';
import type { CiphersuiteName } from 'ts-mls';
import { treeHashRoot } from 'ts-mls/treeHash.js';

import { CIPHERSUITE_NAMES } from './ciphersuites.js';
import { decodeGroupInfo, leafBytesOf, partsOf, verifyGroupInfoMessage } from './group-info.js';
import { refHashSync, syncHash, treeHashRootSync, varintLength } from './hash.js';
import { cryptoBasicsVectors, hex } from './spec-support.js';

describe('synchronous hashing', () => {
  it('computes RefHash as the crypto-basics vectors do', () => {
    for (const vector of cryptoBasicsVectors()) {
      const { label, value, out } = vector.ref_hash;
      expect(refHashSync(vector.cipher_suite, label, hex(value))).toEqual(hex(out));
    }
  });

  it('encodes vector lengths as minimal variable-length integers', () => {
    expect(varintLength(37)).toEqual(Uint8Array.of(0x25));
    expect(varintLength(15_293)).toEqual(Uint8Array.of(0x7b, 0xbd));
    expect(varintLength(494_878_333)).toEqual(Uint8Array.of(0x9d, 0x7f, 0x3e, 0x7d));
  });

  it.each([1, 7])(
    'computes the tree hash ts-mls computes, blanks included (ciphersuite %i)',
    async (suite) => {
      const ciphersuite = CIPHERSUITE_NAMES[suite] as CiphersuiteName;
      const member = () =>
        MlsMember.create(`${randomUUID()}:8${randomUUID().slice(0, 15)}@example.com`, {
          ciphersuite,
        });
      const alice = await member();
      const [bob, carol, dave, erin] = await Promise.all([member(), member(), member(), member()]);
      const others = [bob, carol, dave, erin];
      const group = await alice.createGroup(crypto.getRandomValues(new Uint8Array(16)));
      const keyPackages = (await Promise.all(others.map((other) => other.keyPackages(1)))).flat();
      const add = await group.addMembers(keyPackages);
      group.confirmCommit();
      // A removed member leaves a blank leaf (and blank parents) inside the tree.
      const removal = await group.removeMembers([carol.identity]);
      group.confirmCommit();
      for (const bytes of [add.groupInfo, removal.groupInfo]) {
        const message = await decodeGroupInfo(bytes);
        const { tree, impl, groupInfo } = partsOf(message);
        expect(tree.some((node) => node === undefined)).toBe(true);
        expect(leafBytesOf(message).size).toBe(bytes === add.groupInfo ? 5 : 4);
        const leaves = leafBytesOf(message);
        const sync = treeHashRootSync(tree, syncHash(suite), (leafIndex) => leaves.get(leafIndex));
        expect(sync).toEqual(await treeHashRoot(tree, impl.hash));
        expect(sync).toEqual(groupInfo.groupContext.treeHash);
      }
    },
  );

  it("decodes a tree against the previous epoch's: identical nodes shared, the same tree, roster and tree hash", async () => {
    const member = () =>
      MlsMember.create(`${randomUUID()}:8${randomUUID().slice(0, 15)}@example.com`);
    const [alice, bob, carol, dave] = await Promise.all([member(), member(), member(), member()]);
    const group = await alice.createGroup(crypto.getRandomValues(new Uint8Array(16)));
    const keyPackages = (await Promise.all([bob, carol, dave].map((m) => m.keyPackages(1)))).flat();
    const add = await group.addMembers(keyPackages);
    group.confirmCommit();
    // Alice's update rewrites her leaf and the parents on her path; Bob's, Carol's, Dave's stay.
    const update = await group.update();
    group.confirmCommit();
    const previous = await decodeGroupInfo(add.groupInfo);
    await verifyGroupInfoMessage(previous);
    const alone = await decodeGroupInfo(update.groupInfo);
    const reused = await decodeGroupInfo(update.groupInfo, { previous });
    const before = partsOf(previous).tree;
    const tree = partsOf(reused).tree;
    expect(tree).toEqual(partsOf(alone).tree);
    const shared = tree.map((node, i) => node !== undefined && node === before[i]);
    expect(shared.filter((node, i) => node && i % 2 === 0)).toHaveLength(3);
    expect(shared[2 * group.leafIndex]).toBe(false);
    // Same roster and verdict, the tree hash taken partly from the previous tree's.
    expect(await verifyGroupInfoMessage(reused)).toEqual(await verifyGroupInfoMessage(alone));
    const leaves = leafBytesOf(reused);
    expect(treeHashRootSync(tree, syncHash(1), (leafIndex) => leaves.get(leafIndex))).toEqual(
      await treeHashRoot(tree, partsOf(reused).impl.hash),
    );
  });
});
