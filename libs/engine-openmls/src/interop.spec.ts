import { createTsMlsEngineFactory, type MlsEngine, type ProcessedMessage } from '@parley/client';
import { verifyGroupInfo } from '@parley/mls';
import { describe, expect, it } from 'vitest';

import { createOpenMlsEngineFactory } from './index.js';
import { SimulatedGroup, catchUp, hex, identity, read, rosterOf, text } from './spec-support.js';

const openMls = createOpenMlsEngineFactory();
const tsMls = createTsMlsEngineFactory();

function said(result: ProcessedMessage | undefined): string {
  if (result?.kind !== 'application') throw new Error('expected an application message');
  return read(result.plaintext);
}

async function keyPackage(engine: MlsEngine): Promise<Uint8Array> {
  const [one] = await engine.generateKeyPackages(1);
  if (one === undefined) throw new Error('no key package');
  return one;
}

describe('OpenMLS and ts-mls engines in one group', () => {
  it('join each other, talk, commit both ways, and agree on the exporter', async () => {
    const alice = await tsMls.create(identity());
    const [bob, dave] = await Promise.all([openMls.create(identity()), openMls.create(identity())]);
    const carol = await tsMls.create(identity());
    const groupId = text(`mixed-${hex(crypto.getRandomValues(new Uint8Array(8)))}`);
    const group = new SimulatedGroup(groupId);

    // ts-mls creates the group (it can export the GroupInfo of epoch 0) and adds both kinds.
    const { groupInfo } = await alice.createGroup(groupId);
    if (groupInfo === null) throw new Error('ts-mls exports the GroupInfo of epoch 0');
    expect(rosterOf(await verifyGroupInfo(groupInfo))).toEqual([alice.identity]);
    expect(
      await alice.addMembers(
        groupId,
        [await keyPackage(bob), await keyPackage(carol)],
        group.sender(),
      ),
    ).toBe('accepted');
    const welcome = group.last().bundle.welcome;
    if (welcome === undefined) throw new Error('no Welcome');
    await bob.joinFromWelcome(welcome);
    await carol.joinFromWelcome(welcome);
    await catchUp(alice, group, 0);
    const everyone = [alice, bob, carol];
    for (const engine of everyone) {
      expect(await engine.members(groupId)).toEqual([alice.identity, bob.identity, carol.identity]);
    }

    let from = group.log.length;
    group.post(await bob.encrypt(groupId, text('from OpenMLS')));
    group.post(await alice.encrypt(groupId, text('from ts-mls')));
    for (const engine of everyone) {
      expect((await catchUp(engine, group, from)).map(said)).toEqual([
        'from OpenMLS',
        'from ts-mls',
      ]);
    }

    // The OpenMLS engine commits: adds dave, removes carol, updates; ts-mls follows.
    from = group.log.length;
    expect(await bob.addMembers(groupId, [await keyPackage(dave)], group.sender())).toBe(
      'accepted',
    );
    const daveWelcome = group.last().bundle.welcome;
    if (daveWelcome === undefined) throw new Error('no Welcome');
    await dave.joinFromWelcome(daveWelcome);
    expect(await bob.removeMembers(groupId, [carol.identity], group.sender())).toBe('accepted');
    expect(await bob.update(groupId, group.sender())).toBe('accepted');
    await carol.processMessage(groupId, group.log[from] ?? new Uint8Array());
    expect(
      await carol.processMessage(groupId, group.log[from + 1] ?? new Uint8Array()),
    ).toMatchObject({ kind: 'commit', removedSelf: true });
    for (const engine of [alice, bob]) {
      expect((await catchUp(engine, group, from)).map((r) => r.kind)).toEqual([
        'commit',
        'commit',
        'commit',
      ]);
    }
    await catchUp(dave, group, from + 1);
    const members = [alice, bob, dave];
    for (const engine of members) {
      expect(await engine.epoch(groupId)).toBe(4n);
      expect(await engine.members(groupId)).toEqual([alice.identity, bob.identity, dave.identity]);
    }

    // And ts-mls commits back.
    from = group.log.length;
    expect(await alice.update(groupId, group.sender())).toBe('accepted');
    group.post(await dave.encrypt(groupId, text('after a ts-mls commit')));
    for (const engine of members) {
      const [commit, message] = await catchUp(engine, group, from);
      expect(commit).toMatchObject({ kind: 'commit', epoch: 5n, own: engine === alice });
      expect(said(message)).toBe('after a ts-mls commit');
    }

    // core-crypto's exportSecretKey is MLS-Exporter("exporter", "", length): ts-mls computes the
    // exporter itself from RFC 9420 §8.5 and gets the same bytes.
    const secrets = await Promise.all(
      members.map((engine) => engine.exportSecret(groupId, 'exporter', new Uint8Array(), 48)),
    );
    expect(new Set(secrets.map(hex)).size).toBe(1);
  });

  it('take ts-mls members into a group OpenMLS created, which then commit in it', async () => {
    // core-crypto's groups require the basic and x509 credential types of every leaf
    // (required_capabilities); ts-mls leaves declare both, so OpenMLS accepts them.
    const [ana, dee] = await Promise.all([openMls.create(identity()), openMls.create(identity())]);
    const [ben, cy] = await Promise.all([tsMls.create(identity()), tsMls.create(identity())]);
    const groupId = text(`openmls-made-${hex(crypto.getRandomValues(new Uint8Array(8)))}`);
    const group = new SimulatedGroup(groupId);
    expect(await ana.createGroup(groupId)).toEqual({ groupInfo: null });
    expect(await ana.addMembers(groupId, [await keyPackage(ben)], group.sender())).toBe('accepted');
    const welcome = group.last().bundle.welcome;
    if (welcome === undefined) throw new Error('no Welcome');
    await ben.joinFromWelcome(welcome);

    // The ts-mls member commits in the OpenMLS group: an UpdatePath (its new leaf must meet the
    // group's required capabilities too), then an add of one member of each engine.
    let from = group.log.length;
    expect(await ben.update(groupId, group.sender())).toBe('accepted');
    expect(
      await ben.addMembers(groupId, [await keyPackage(cy), await keyPackage(dee)], group.sender()),
    ).toBe('accepted');
    const secondWelcome = group.last().bundle.welcome;
    if (secondWelcome === undefined) throw new Error('no Welcome');
    await cy.joinFromWelcome(secondWelcome);
    await dee.joinFromWelcome(secondWelcome);
    expect((await catchUp(ana, group, from)).map((r) => r.kind)).toEqual(['commit', 'commit']);
    await catchUp(ben, group, from);
    const everyone = [ana, ben, cy, dee];
    from = group.log.length;
    group.post(await cy.encrypt(groupId, text('from ts-mls')));
    group.post(await dee.encrypt(groupId, text('from OpenMLS')));
    for (const engine of everyone) {
      expect((await catchUp(engine, group, from)).map(said)).toEqual([
        'from ts-mls',
        'from OpenMLS',
      ]);
    }

    // Removals both ways: ts-mls removes an OpenMLS member, OpenMLS removes a ts-mls one.
    from = group.log.length;
    expect(await ben.removeMembers(groupId, [dee.identity], group.sender())).toBe('accepted');
    expect(await catchUp(dee, group, from)).toMatchObject([{ kind: 'commit', removedSelf: true }]);
    for (const engine of [ana, ben, cy]) await catchUp(engine, group, from);
    from = group.log.length;
    expect(await ana.removeMembers(groupId, [cy.identity], group.sender())).toBe('accepted');
    expect(await catchUp(cy, group, from)).toMatchObject([{ kind: 'commit', removedSelf: true }]);
    await catchUp(ben, group, from);
    await catchUp(ana, group, from);
    from = group.log.length;
    group.post(await ben.encrypt(groupId, text('two left')));
    for (const engine of [ana, ben]) {
      expect((await catchUp(engine, group, from)).map(said)).toEqual(['two left']);
      expect(await engine.epoch(groupId)).toBe(5n);
      expect(await engine.members(groupId)).toEqual([ana.identity, ben.identity]);
    }
    const secrets = await Promise.all(
      [ana, ben].map((engine) => engine.exportSecret(groupId, 'exporter', new Uint8Array(), 32)),
    );
    expect(hex(secrets[0] ?? new Uint8Array())).toBe(hex(secrets[1] ?? new Uint8Array()));
  });
});
