import {
  createCommit,
  createGroup,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  encodeGroupState,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  type CiphersuiteImpl,
  type ClientConfig,
  type ClientState,
  type KeyPackage,
  type PrivateKeyPackage,
  type Proposal,
  type RatchetTree,
  type Welcome,
} from 'ts-mls';
import { defaultClientConfig } from 'ts-mls/clientConfig.js';
import { validateRatchetTree } from 'ts-mls/clientState.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { joinFromWelcome, joinWithRfcTreeCheck, validateRatchetTreeRfc } from './join.js';

const config: ClientConfig = defaultClientConfig;
let cs: CiphersuiteImpl;

beforeAll(async () => {
  cs = await getCiphersuiteImpl(
    getCiphersuiteFromName('MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'),
  );
});

interface Member {
  keyPackage: KeyPackage;
  privateKeyPackage: PrivateKeyPackage;
}

let counter = 0;
async function member(): Promise<Member> {
  counter += 1;
  const { publicPackage, privatePackage } = await generateKeyPackage(
    { credentialType: 'basic', identity: new TextEncoder().encode(`member-${counter}`) },
    defaultCapabilities(),
    defaultLifetime,
    [],
    cs,
  );
  return { keyPackage: publicPackage, privateKeyPackage: privatePackage };
}

const add = (m: Member): Proposal => ({ proposalType: 'add', add: { keyPackage: m.keyPackage } });
const remove = (leaf: number): Proposal => ({ proposalType: 'remove', remove: { removed: leaf } });

async function commit(
  state: ClientState,
  proposals: Proposal[],
): Promise<{ state: ClientState; welcome: Welcome | undefined }> {
  const result = await createCommit(
    { state, cipherSuite: cs },
    { extraProposals: proposals, ratchetTreeExtension: true },
  );
  return { state: result.newState, welcome: result.welcome };
}

function clone(tree: RatchetTree): RatchetTree {
  return tree.map((node) =>
    node?.nodeType === 'parent'
      ? { ...node, parent: { ...node.parent, unmergedLeaves: [...node.parent.unmergedLeaves] } }
      : node,
  );
}

/** Removes two members (a path fills the owner's ancestors), then adds two without a path. */
async function unmergedAtSeveralHeights(): Promise<{
  state: ClientState;
  welcome: Welcome;
  joiner: Member;
}> {
  const owner = await member();
  let state = await createGroup(
    new Uint8Array([7]),
    owner.keyPackage,
    owner.privateKeyPackage,
    [],
    cs,
  );
  const first = await Promise.all([1, 2, 3, 4, 5].map(() => member()));
  ({ state } = await commit(state, first.map(add)));
  ({ state } = await commit(state, [remove(3), remove(5)]));
  const joiner = await member();
  const second = await commit(state, [add(joiner), add(await member())]);
  if (second.welcome === undefined) throw new Error('no Welcome');
  return { state: second.state, welcome: second.welcome, joiner };
}

describe('validateRatchetTreeRfc', () => {
  it('accepts unmerged leaves listed at ancestors of different heights, which ts-mls rejects', async () => {
    const { state } = await unmergedAtSeveralHeights();
    const tree = state.ratchetTree;
    const unmerged = tree.map((n) => (n?.nodeType === 'parent' ? n.parent.unmergedLeaves : null));
    expect(unmerged[3]).toEqual([3]);
    expect(unmerged[7]).toEqual([3, 5]);
    const tsMls = await validateRatchetTree(
      tree,
      state.groupContext,
      config.lifetimeConfig,
      config.authService,
      state.groupContext.treeHash,
      cs,
    );
    expect(tsMls?.message).toMatch(/unmerged_leaves/);
    await expect(validateRatchetTreeRfc(tree, state.groupContext, config, cs)).resolves.toBe(
      undefined,
    );
  });

  it('rejects an intermediate node that does not list the unmerged leaf', async () => {
    const { state } = await unmergedAtSeveralHeights();
    const tree = clone(state.ratchetTree);
    const node = tree[3];
    if (node?.nodeType !== 'parent') throw new Error('expected a parent at node 3');
    node.parent.unmergedLeaves = [];
    await expect(validateRatchetTreeRfc(tree, state.groupContext, config, cs)).rejects.toThrow(
      /intermediate node must list/,
    );
  });

  it('rejects an unmerged leaf that is not a descendant, and a tree that does not match its hash', async () => {
    const { state } = await unmergedAtSeveralHeights();
    const tree = clone(state.ratchetTree);
    const node = tree[3];
    if (node?.nodeType !== 'parent') throw new Error('expected a parent at node 3');
    node.parent.unmergedLeaves = [3, 5];
    await expect(validateRatchetTreeRfc(tree, state.groupContext, config, cs)).rejects.toThrow(
      /non-blank descendant/,
    );
    const context = { ...state.groupContext, treeHash: new Uint8Array(32) };
    await expect(validateRatchetTreeRfc(state.ratchetTree, context, config, cs)).rejects.toThrow(
      /tree hash/,
    );
  });
});

describe('joinFromWelcome', () => {
  it('joins where ts-mls joinGroup throws', async () => {
    const { state, welcome, joiner } = await unmergedAtSeveralHeights();
    await expect(
      joinGroup(welcome, joiner.keyPackage, joiner.privateKeyPackage, emptyPskIndex, cs),
    ).rejects.toThrow(/unmerged_leaves/);
    const joined = await joinFromWelcome(
      welcome,
      joiner.keyPackage,
      joiner.privateKeyPackage,
      cs,
      config,
    );
    expect(joined.groupContext.epoch).toBe(state.groupContext.epoch);
    expect(joined.keySchedule.exporterSecret).toEqual(state.keySchedule.exporterSecret);
  });

  it('builds exactly the state ts-mls builds, with and without a path secret', async () => {
    const owner = await member();
    let state = await createGroup(
      new Uint8Array([8]),
      owner.keyPackage,
      owner.privateKeyPackage,
      [],
      cs,
    );
    const a = await member();
    const b = await member();
    // Add-only: no path, no path secret in the Welcome.
    const addOnly = await commit(state, [add(a), add(b)]);
    state = addOnly.state;
    // A Remove with the Add forces a path: the Welcome carries a path secret.
    const c = await member();
    const withPath = await commit(state, [remove(2), add(c)]);
    for (const [welcome, joiner] of [
      [addOnly.welcome, a],
      [withPath.welcome, c],
    ] as const) {
      if (welcome === undefined) throw new Error('no Welcome');
      const expected = await joinGroup(
        welcome,
        joiner.keyPackage,
        joiner.privateKeyPackage,
        emptyPskIndex,
        cs,
      );
      const actual = await joinWithRfcTreeCheck(
        welcome,
        joiner.keyPackage,
        joiner.privateKeyPackage,
        cs,
        config,
      );
      expect(encodeGroupState(actual)).toEqual(encodeGroupState(expected));
    }
  });
});
