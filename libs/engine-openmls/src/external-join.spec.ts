import { createTsMlsEngineFactory, type MlsEngineFactory } from '@parley/client';
import { decodeCommit, decodeGroupInfo, verifyExternalCommit } from '@parley/mls';
import { describe, expect, it } from 'vitest';

import { createOpenMlsEngineFactory } from './index.js';
import { SimulatedGroup, catchUp, hex, identity, read, text } from './spec-support.js';

const openMls = createOpenMlsEngineFactory();
const tsMls = createTsMlsEngineFactory();
const engines: [string, MlsEngineFactory][] = [
  ['ts-mls', tsMls],
  ['OpenMLS', openMls],
];

describe.each(engines)('a group made by %s', (_creatorName, creatorEngine) => {
  it.each(engines)(
    'is joined by external commit from its GroupInfo by %s; both talk, the commit verifies',
    async (_joinerName, joinerEngine) => {
      const creator = await creatorEngine.create(identity());
      const joiner = await joinerEngine.create(identity());
      const groupId = text(`external-${hex(crypto.getRandomValues(new Uint8Array(8)))}`);
      const group = new SimulatedGroup(groupId);
      await creator.createGroup(groupId);
      // A commit gives every engine's GroupInfo (OpenMLS exports none of epoch 0).
      expect(await creator.update(groupId, group.sender())).toBe('accepted');
      const stored = group.last().bundle.groupInfo;

      const { groupId: joined, outcome } = await joiner.joinByExternalCommit(
        stored,
        group.sender(),
      );
      expect(outcome).toBe('accepted');
      expect(hex(joined)).toBe(hex(groupId));
      const external = group.last().bundle;
      // What the server checks of it.
      expect(
        await verifyExternalCommit(
          await decodeCommit(external.commit),
          await decodeGroupInfo(stored),
          await decodeGroupInfo(external.groupInfo),
        ),
      ).toBe(1);
      await catchUp(creator, group, 1);
      expect(await creator.members(groupId)).toHaveLength(2);
      const from = group.log.length;
      group.post(await joiner.encrypt(groupId, text('from the joiner')));
      group.post(await creator.encrypt(groupId, text('from the creator')));
      const [toCreator] = await catchUp(creator, group, from);
      const [, toJoiner] = await catchUp(joiner, group, from);
      expect(toCreator?.kind === 'application' ? read(toCreator.plaintext) : null).toBe(
        'from the joiner',
      );
      expect(toJoiner?.kind === 'application' ? read(toJoiner.plaintext) : null).toBe(
        'from the creator',
      );
    },
  );
});

describe('a lost race', () => {
  it('leaves the joiner out of the group, and it joins from the fresh GroupInfo', async () => {
    const creator = await tsMls.create(identity());
    const joiner = await openMls.create(identity());
    const groupId = text(`external-${hex(crypto.getRandomValues(new Uint8Array(8)))}`);
    const group = new SimulatedGroup(groupId);
    await creator.createGroup(groupId);
    expect(await creator.update(groupId, group.sender())).toBe('accepted');
    const stale = group.last().bundle.groupInfo;
    expect(await creator.update(groupId, group.sender())).toBe('accepted');
    const lost = await joiner.joinByExternalCommit(stale, group.sender());
    expect(lost.outcome).toBe('rejected');
    expect(await joiner.isMember(groupId)).toBe(false);
    const won = await joiner.joinByExternalCommit(group.last().bundle.groupInfo, group.sender());
    expect(won.outcome).toBe('accepted');
    await catchUp(creator, group, 2);
    group.post(await joiner.encrypt(groupId, text('joined after a loss')));
    const [heard] = await catchUp(creator, group, group.log.length - 1);
    expect(heard?.kind === 'application' ? read(heard.plaintext) : null).toBe(
      'joined after a loss',
    );
  });
});
