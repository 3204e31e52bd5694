import type { ProcessedMessage } from '@parley/client';
import { inspectMessage } from '@parley/mls';
import { describe, expect, it } from 'vitest';

import { OpenMlsEngineError, createOpenMlsEngineFactory, type OpenMlsEngine } from './index.js';
import {
  SimulatedGroup,
  catchUp,
  codeOf,
  hex,
  identity,
  read,
  refsOf,
  rosterOf,
  text,
} from './spec-support.js';

const factory = createOpenMlsEngineFactory();

function application(result: ProcessedMessage) {
  if (result.kind !== 'application')
    throw new Error(`expected an application message, got ${result.kind}`);
  return { text: read(result.plaintext), sender: result.senderIdentity, own: result.own };
}

async function keyPackage(engine: OpenMlsEngine): Promise<Uint8Array> {
  const [one] = await engine.generateKeyPackages(1);
  if (one === undefined) throw new Error('no key package');
  return one;
}

describe('three OpenMLS engines in one group', () => {
  it('create, add two, join, talk both ways, race, remove, update, export', async () => {
    const [alice, bob, carol] = await Promise.all([
      factory.create(identity()),
      factory.create(identity()),
      factory.create(identity()),
    ]);
    const groupId = text(`group-${hex(crypto.getRandomValues(new Uint8Array(8)))}`);
    const group = new SimulatedGroup(groupId);

    // core-crypto cannot export the GroupInfo of epoch 0: createGroup makes the group, returns none.
    expect(await alice.isMember(groupId)).toBe(false);
    expect(await alice.createGroup(groupId)).toEqual({ groupInfo: null });
    expect(await alice.epoch(groupId)).toBe(0n);
    expect(await alice.members(groupId)).toEqual([alice.identity]);
    expect(await codeOf(() => alice.createLocalGroup(groupId))).toBe('GROUP_EXISTS');

    // Add two by key package; the simulated server inspects the bundle as Parley's does.
    const added = [await keyPackage(bob), await keyPackage(carol)];
    const addedRefs = await refsOf(added);
    expect(await alice.addMembers(groupId, added, group.sender())).toBe('accepted');
    const add = group.last();
    expect(add.commit.epoch).toBe(0n);
    expect(add.commit.sender).toEqual({ type: 'member', leafIndex: 0 });
    expect(
      add.commit.proposals.map((p) => (p.type === 'add' ? hex(p.keyPackageRef) : p.type)),
    ).toEqual(addedRefs);
    expect(inspectMessage(add.bundle.commit).wireFormat).toBe('public_message');
    expect(rosterOf(add.groupInfo)).toEqual([alice.identity, bob.identity, carol.identity]);
    expect(add.welcomeRefs.sort()).toEqual([...addedRefs].sort());
    expect(await alice.epoch(groupId)).toBe(1n);

    // Join from the Welcome (an MLSMessage, as the server hands it out).
    const welcome = add.bundle.welcome;
    if (welcome === undefined) throw new Error('no Welcome');
    for (const joiner of [bob, carol]) {
      expect(hex((await joiner.joinFromWelcome(welcome)).groupId)).toBe(hex(groupId));
      expect(await joiner.epoch(groupId)).toBe(1n);
      expect(await joiner.members(groupId)).toEqual([alice.identity, bob.identity, carol.identity]);
    }
    // The Welcome's key package is spent (core-crypto deleted its private keys on joining).
    expect(await codeOf(() => bob.joinFromWelcome(welcome))).toBe('NO_MATCHING_KEY_PACKAGE');

    // The log echoes the creator's own commit back to it.
    expect(await alice.processMessage(groupId, group.log[0] ?? new Uint8Array())).toEqual({
      kind: 'commit',
      epoch: 1n,
      own: true,
      removedSelf: false,
    });

    // Messages both ways, with the sender's own echo.
    let from = group.log.length;
    group.post(await bob.encrypt(groupId, text('hello from bob')));
    group.post(await alice.encrypt(groupId, text('hello from alice')));
    group.post(await carol.encrypt(groupId, text('hello from carol')));
    for (const engine of [alice, bob, carol]) {
      const seen = (await catchUp(engine, group, from)).map(application);
      expect(seen).toEqual([
        { text: 'hello from bob', sender: bob.identity, own: engine === bob },
        { text: 'hello from alice', sender: alice.identity, own: engine === alice },
        { text: 'hello from carol', sender: carol.identity, own: engine === carol },
      ]);
    }
    // A replay from someone else is not mistaken for an own message.
    expect(
      await codeOf(() => alice.processMessage(groupId, group.log[from] ?? new Uint8Array())),
    ).toBe('DUPLICATE_MESSAGE');
    expect(
      await codeOf(() => alice.processMessage(text('other'), group.log[from] ?? new Uint8Array())),
    ).toBe('WRONG_GROUP');

    // The exporter agrees across members (RFC 9420 §8.5, label "exporter", empty context).
    const secrets = await Promise.all(
      [alice, bob, carol].map((engine) =>
        engine.exportSecret(groupId, 'exporter', new Uint8Array(), 32),
      ),
    );
    expect(new Set(secrets.map(hex)).size).toBe(1);
    expect(secrets[0]?.length).toBe(32);
    expect(
      await codeOf(() => alice.exportSecret(groupId, 'SFrame 1.0', new Uint8Array(), 32)),
    ).toBe('UNSUPPORTED_OPERATION');
    expect(await codeOf(() => alice.exportSecret(groupId, 'exporter', text('x'), 32))).toBe(
      'UNSUPPORTED_OPERATION',
    );

    // Two commits for epoch 1: carol's wins, bob's is rejected and leaves bob where he was.
    from = group.log.length;
    expect(await carol.update(groupId, group.sender())).toBe('accepted');
    expect(group.last().commit.pathLeaf?.identity).toEqual(text(carol.identity));
    expect(await bob.update(groupId, group.sender())).toBe('rejected');
    expect(group.rejected).toBe(1);
    expect(await bob.epoch(groupId)).toBe(1n);
    // A message of the new epoch waits until its commit is processed.
    const early = group.post(await carol.encrypt(groupId, text('epoch 2')));
    expect(await codeOf(() => bob.processMessage(groupId, early))).toBe('FUTURE_EPOCH');
    for (const engine of [alice, bob, carol]) {
      const [commit, message] = await catchUp(engine, group, from);
      expect(commit).toEqual({
        kind: 'commit',
        epoch: 2n,
        own: engine === carol,
        removedSelf: false,
      });
      expect(application(message ?? { kind: 'proposal' }).text).toBe('epoch 2');
    }
    // Bob tries again on the new epoch and wins it.
    from = group.log.length;
    expect(await bob.update(groupId, group.sender())).toBe('accepted');
    for (const engine of [alice, bob, carol]) {
      expect(await catchUp(engine, group, from)).toEqual([
        { kind: 'commit', epoch: 3n, own: engine === bob, removedSelf: false },
      ]);
    }

    // A failing `send` reaches the caller; the commit is discarded and the engine goes on.
    const failure = new Error('network down');
    await expect(alice.update(groupId, () => Promise.reject(failure))).rejects.toBe(failure);
    expect(await alice.epoch(groupId)).toBe(3n);

    // Alice removes carol.
    from = group.log.length;
    expect(await codeOf(() => alice.removeMembers(groupId, [alice.identity], group.sender()))).toBe(
      'CANNOT_REMOVE_SELF',
    );
    expect(await codeOf(() => alice.removeMembers(groupId, [identity()], group.sender()))).toBe(
      'UNKNOWN_MEMBER',
    );
    expect(await alice.removeMembers(groupId, [carol.identity], group.sender())).toBe('accepted');
    const remove = group.last();
    expect(remove.commit.proposals).toEqual([{ type: 'remove', leafIndex: 2 }]);
    expect(rosterOf(remove.groupInfo)).toEqual([alice.identity, bob.identity]);
    expect(await catchUp(carol, group, from)).toEqual([
      { kind: 'commit', epoch: 4n, own: false, removedSelf: true },
    ]);
    expect(await carol.isMember(groupId)).toBe(false);
    expect(await carol.epoch(groupId)).toBe(4n);
    expect(await codeOf(() => carol.encrypt(groupId, text('still here?')))).toBe('NOT_A_MEMBER');
    expect(await codeOf(() => carol.members(groupId))).toBe('NOT_A_MEMBER');
    expect(await catchUp(bob, group, from)).toEqual([
      { kind: 'commit', epoch: 4n, own: false, removedSelf: false },
    ]);
    await catchUp(alice, group, from);
    for (const engine of [alice, bob]) {
      expect(await engine.members(groupId)).toEqual([alice.identity, bob.identity]);
    }

    // An update after the removal; messages still flow, and carol can read none of them.
    from = group.log.length;
    expect(await alice.update(groupId, group.sender())).toBe('accepted');
    group.post(await alice.encrypt(groupId, text('just us')));
    const [updated, justUs] = await catchUp(bob, group, from);
    expect(updated).toEqual({ kind: 'commit', epoch: 5n, own: false, removedSelf: false });
    expect(application(justUs ?? { kind: 'proposal' }).text).toBe('just us');
    expect(
      await codeOf(() => carol.processMessage(groupId, group.log.at(-1) ?? new Uint8Array())),
    ).toBe('NOT_A_MEMBER');
    const last = await bob.encrypt(groupId, text('bye'));
    expect(application(await alice.processMessage(groupId, last))).toEqual({
      text: 'bye',
      sender: bob.identity,
      own: false,
    });
    expect(await alice.epoch(groupId)).toBe(5n);
    expect(await bob.epoch(groupId)).toBe(5n);
  });

  it('a rejected add leaves the epoch and the key packages usable', async () => {
    const [alice, bob] = await Promise.all([
      factory.create(identity()),
      factory.create(identity()),
    ]);
    const groupId = text('rejected-add');
    await alice.createLocalGroup(groupId);
    const bobsPackage = await keyPackage(bob);
    expect(await alice.addMembers(groupId, [bobsPackage], () => Promise.resolve('rejected'))).toBe(
      'rejected',
    );
    expect(await alice.epoch(groupId)).toBe(0n);
    expect(await alice.members(groupId)).toEqual([alice.identity]);
    const group = new SimulatedGroup(groupId);
    expect(await alice.addMembers(groupId, [bobsPackage], group.sender())).toBe('accepted');
    const welcome = group.last().bundle.welcome;
    if (welcome === undefined) throw new Error('no Welcome');
    await bob.joinFromWelcome(welcome);
    expect(await bob.members(groupId)).toEqual([alice.identity, bob.identity]);
    expect(await codeOf(() => alice.addMembers(groupId, [text('junk')], group.sender()))).toBe(
      'INVALID_KEY_PACKAGE',
    );
    expect(await codeOf(() => bob.joinFromWelcome(text('junk')))).toBe('INVALID_MESSAGE');
    expect(await codeOf(() => bob.epoch(text('no such group')))).toBe('UNKNOWN_GROUP');
  });

  it('a commit the service took although `send` failed is reported when the log shows it', async () => {
    const [alice, bob] = await Promise.all([
      factory.create(identity()),
      factory.create(identity()),
    ]);
    const groupId = text('lost-commit');
    const group = new SimulatedGroup(groupId);
    await alice.createLocalGroup(groupId);
    await alice.addMembers(groupId, [await keyPackage(bob)], group.sender());
    const welcome = group.last().bundle.welcome;
    if (welcome === undefined) throw new Error('no Welcome');
    await bob.joinFromWelcome(welcome);
    const from = group.log.length;
    // The service stores the commit, but its answer never arrives.
    const accept = group.sender();
    const lost = new Error('response lost');
    await expect(
      alice.update(groupId, async (bundle) => {
        await accept(bundle);
        throw lost;
      }),
    ).rejects.toBe(lost);
    expect(await alice.epoch(groupId)).toBe(1n);
    expect(await catchUp(bob, group, from)).toEqual([
      { kind: 'commit', epoch: 2n, own: false, removedSelf: false },
    ]);
    expect(await codeOf(() => catchUp(alice, group, from))).toBe('COMMIT_LOST');
  });

  it('a Welcome to a spent key package names none of ours', async () => {
    const [alice, bob] = await Promise.all([
      factory.create(identity()),
      factory.create(identity()),
    ]);
    const [reused = new Uint8Array()] = await bob.generateKeyPackages(1);
    for (const name of ['first', 'second']) {
      const groupId = text(name);
      const group = new SimulatedGroup(groupId);
      await alice.createLocalGroup(groupId);
      await alice.addMembers(groupId, [reused], group.sender());
      const welcome = group.last().bundle.welcome;
      if (welcome === undefined) throw new Error('no Welcome');
      const joined = bob.joinFromWelcome(welcome);
      if (name === 'first') await joined;
      else {
        const error = await joined.then(
          () => null,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(OpenMlsEngineError);
        expect((error as OpenMlsEngineError).code).toBe('NO_MATCHING_KEY_PACKAGE');
      }
    }
  });
});
