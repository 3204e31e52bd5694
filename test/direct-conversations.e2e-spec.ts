import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { b64, dataOf, errorCodeOf } from './support/graphql.js';
import { ParleyDevice } from './support/parley-client.js';
import {
  describeE2E,
  startTestApp,
  startTwoInstances,
  type TestApp,
  twoInstancesSkipReason,
} from './support/test-app.js';

/** The value, which the test knows is there. */
function present<T>(value: T | undefined, what = 'value'): T {
  if (value === undefined) throw new Error(`${what} missing`);
  return value;
}

const CREATE = `mutation ($deviceId: ID!, $groupId: Bytes!, $groupInfo: Bytes, $kind: ConversationKind!, $peerUserId: ID) {
  createConversation(input: { deviceId: $deviceId, groupId: $groupId, groupInfo: $groupInfo,
                               kind: $kind, peerUserId: $peerUserId }) {
    id kind peerUserId role members { userId role }
  }
}`;

const CONVERSATIONS = `query ($deviceId: ID!) {
  conversations(deviceId: $deviceId) { id kind peerUserId role members { userId deviceId role } }
}`;

interface Created {
  createConversation: {
    id: string;
    kind: string;
    peerUserId: string | null;
    role: string;
    members: { userId: string; role: string }[];
  };
}

/** A ts-mls group of the device, registered with the given kind and peer; the raw response. */
async function startDirect(device: ParleyDevice, peerUserId: string | null, kind = 'DIRECT') {
  const group = await device.mls.createGroup(randomBytes(16));
  const response = await device.gql<Created>(CREATE, {
    groupId: b64(group.groupId),
    groupInfo: b64(await group.groupInfo()),
    kind,
    peerUserId,
  });
  return { group, response };
}

// Two instances on one PostgreSQL database with Redis between them; PGlite (in-process, one
// database per server) cannot be shared, so there the race runs on one instance.
if (twoInstancesSkipReason !== undefined) {
  console.warn(`direct conversations: the race runs on one instance (${twoInstancesSkipReason})`);
}

describeE2E('direct conversations', () => {
  let a: TestApp;
  let b: TestApp;
  let dataSource: DataSource;
  beforeAll(async () => {
    if (twoInstancesSkipReason === undefined) {
      [a, b] = await startTwoInstances();
    } else {
      a = await startTestApp();
      b = a;
    }
    dataSource = a.app.get(DataSource);
  });
  afterAll(async () => {
    if (b !== a) await b.close();
    await a.close();
  });

  it('keeps one DIRECT conversation per pair when both users start it at once, on two instances (20 rounds); the loser is told which; both then talk in it', async () => {
    const rounds = 20;
    const timings: number[] = [];
    for (let round = 0; round < rounds; round += 1) {
      const alice = await ParleyDevice.create(a);
      const bob = await ParleyDevice.create(b);
      await bob.uploadKeyPackages(1);
      const started = Date.now();
      const [fromAlice, fromBob] = await Promise.all([
        startDirect(alice, bob.userId),
        startDirect(bob, alice.userId),
      ]);
      timings.push(Date.now() - started);
      const outcomes = [fromAlice, fromBob].map(({ response }) =>
        response.errors === undefined ? 'created' : response.errors[0]?.extensions?.code,
      );
      expect(outcomes.sort(), `round ${round}`).toEqual(['DIRECT_CONVERSATION_EXISTS', 'created']);
      const winner = fromAlice.response.errors === undefined ? fromAlice : fromBob;
      const loser = winner === fromAlice ? fromBob : fromAlice;
      const created = dataOf(winner.response).createConversation;
      expect(loser.response.errors?.[0]?.extensions?.conversationId).toBe(created.id);
      expect(created.kind).toBe('DIRECT');
      expect(created.role).toBe('ADMIN');
      const [low, high] = [alice.userId, bob.userId].sort();
      const [{ count }] = await dataSource.query<[{ count: number }]>(
        `SELECT count(*)::int AS "count" FROM "conversations" WHERE "direct_user_low" = $1 AND "direct_user_high" = $2`,
        [low, high],
      );
      expect(count, `round ${round}`).toBe(1);
      if (round === 0) {
        // The database itself refuses a second row for the pair, whichever order it names them in.
        await expect(
          dataSource.query(
            `INSERT INTO "conversations" ("id", "group_id", "kind", "direct_user_low", "direct_user_high",
               "ciphersuite", "epoch", "last_seq", "retained_from_seq")
             VALUES (gen_random_uuid(), $1, 'DIRECT', $2, $3, 1, 0, 0, 1)`,
            [randomBytes(16), low, high],
          ),
        ).rejects.toThrow(/conversations_direct_pair_key/);
        await expect(
          dataSource.query(
            `INSERT INTO "conversations" ("id", "group_id", "kind", "direct_user_low", "direct_user_high",
               "ciphersuite", "epoch", "last_seq", "retained_from_seq")
             VALUES (gen_random_uuid(), $1, 'DIRECT', $2, $3, 1, 0, 0, 1)`,
            [randomBytes(16), high, low],
          ),
        ).rejects.toThrow(/conversations_direct_pair/);
      }

      // Alice's side takes part: if Bob won, he adds Alice; else Alice adds Bob.
      const [owner, peer] = winner === fromAlice ? [alice, bob] : [bob, alice];
      if (peer === alice) await alice.uploadKeyPackages(1);
      const [keyPackage] = await owner.claim([peer.userId]);
      dataOf(await owner.submit(created.id, await winner.group.addMembers([present(keyPackage)])));
      winner.group.confirmCommit();
      const joined = await peer.joinFromWelcome();
      expect(joined.conversationId).toBe(created.id);
      await owner.say(winner.group, created.id, `hello ${round}`);
      await peer.say(joined.group, created.id, `hi ${round}`);
      const ownerRead = await owner.catchUp(winner.group, created.id, 1);
      const peerRead = await peer.catchUp(joined.group, created.id, joined.commitSeq);
      expect(peerRead.texts).toContain(`hello ${round}`);
      expect(ownerRead.texts).toContain(`hi ${round}`);

      for (const [device, other] of [
        [alice, bob],
        [bob, alice],
      ] as const) {
        const list = dataOf(
          await device.gql<{
            conversations: { id: string; kind: string; peerUserId: string; role: string }[];
          }>(CONVERSATIONS),
        ).conversations;
        expect(list).toEqual([
          expect.objectContaining({
            id: created.id,
            kind: 'DIRECT',
            peerUserId: other.userId,
            role: 'ADMIN',
          }),
        ]);
      }
    }
    const sorted = [...timings].sort((x, y) => x - y);
    console.log(
      `direct race: ${rounds} rounds on ${b === a ? 'one instance' : 'two instances'}, create pair median ${sorted[Math.floor(rounds / 2)]} ms, max ${sorted.at(-1)} ms`,
    );
  });

  it('refuses a commit adding a third user to a DIRECT conversation (FORBIDDEN, DIRECT_CONVERSATION) and changes nothing', async () => {
    const alice = await ParleyDevice.create(a);
    const bob = await ParleyDevice.create(a);
    const carol = await ParleyDevice.create(a);
    await Promise.all([bob.uploadKeyPackages(1), carol.uploadKeyPackages(1)]);
    const { group, response } = await startDirect(alice, bob.userId);
    const conversationId = dataOf(response).createConversation.id;
    const [bobPackage] = await alice.claim([bob.userId]);
    dataOf(await alice.submit(conversationId, await group.addMembers([present(bobPackage)])));
    group.confirmCommit();

    const [carolPackage] = await alice.claim([carol.userId]);
    const refused = await alice.submit(
      conversationId,
      await group.addMembers([present(carolPackage)]),
    );
    expect(refused.errors?.[0]?.extensions).toMatchObject({
      code: 'FORBIDDEN',
      reason: 'DIRECT_CONVERSATION',
    });
    group.discardCommit();
    const { conversations } = dataOf(
      await alice.gql<{ conversations: { id: string; members: { userId: string }[] }[] }>(
        CONVERSATIONS,
      ),
    );
    expect(
      conversations.find((c) => c.id === conversationId)?.members.map((m) => m.userId),
    ).toEqual([alice.userId, bob.userId]);
    // Both users are equal: neither can be demoted or promoted.
    expect(
      errorCodeOf(
        await alice.gql(
          `mutation ($deviceId: ID!, $conversationId: ID!, $userId: ID!) {
            setMemberRole(input: { deviceId: $deviceId, conversationId: $conversationId, userId: $userId, role: MEMBER }) { id }
          }`,
          { conversationId, userId: bob.userId },
        ),
      ),
    ).toBe('BAD_USER_INPUT');
  });

  it('refuses bad input with typed errors and stores nothing', async () => {
    const alice = await ParleyDevice.create(a);
    const bob = await ParleyDevice.create(a);
    const cases: [string, string | null, string, string][] = [
      ['DIRECT without a peer', null, 'DIRECT', 'BAD_USER_INPUT'],
      ['GROUP with a peer', bob.userId, 'GROUP', 'BAD_USER_INPUT'],
      ['DIRECT with oneself', alice.userId, 'DIRECT', 'BAD_USER_INPUT'],
      [
        'DIRECT with an unknown user',
        '00000000-0000-4000-8000-000000000000',
        'DIRECT',
        'NOT_FOUND',
      ],
      ['DIRECT with a malformed id', 'not-a-user', 'DIRECT', 'NOT_FOUND'],
    ];
    for (const [name, peer, kind, code] of cases) {
      const { response } = await startDirect(alice, peer, kind);
      expect(errorCodeOf(response), name).toBe(code);
    }
    const { conversations } = dataOf(await alice.gql<{ conversations: unknown[] }>(CONVERSATIONS));
    expect(conversations).toEqual([]);
  });
});
