import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MlsGroup } from '@parley/mls-member';
import { dataOf, errorCodeOf } from './support/graphql.js';
import { ParleyDevice } from './support/parley-client.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

/** The value, which the test knows is there. */
function present<T>(value: T | undefined, what = 'value'): T {
  if (value === undefined) throw new Error(`${what} missing`);
  return value;
}

const CONVERSATION = `query ($deviceId: ID!, $conversationId: ID!) {
  conversation(deviceId: $deviceId, conversationId: $conversationId) {
    epoch kind peerUserId role members { userId deviceId role }
  }
}`;

const SET_ROLE = `mutation ($deviceId: ID!, $conversationId: ID!, $userId: ID!, $role: ConversationRole!) {
  setMemberRole(input: { deviceId: $deviceId, conversationId: $conversationId, userId: $userId, role: $role }) {
    role members { userId role }
  }
}`;

interface ConversationView {
  epoch: number;
  kind: string;
  peerUserId: string | null;
  role: 'ADMIN' | 'MEMBER';
  members: { userId: string; deviceId: string; role: 'ADMIN' | 'MEMBER' }[];
}

interface RoleEvent {
  __typename: string;
  conversationId?: string;
  userId?: string;
  role?: string;
}

async function view(device: ParleyDevice, conversationId: string): Promise<ConversationView> {
  return dataOf(
    await device.gql<{ conversation: ConversationView }>(CONVERSATION, { conversationId }),
  ).conversation;
}

/** The error's extensions of a response that must have failed. */
function extensionsOf(response: { errors?: { extensions?: Record<string, unknown> }[] }) {
  expect(response.errors, 'expected an error').toHaveLength(1);
  return response.errors?.[0]?.extensions ?? {};
}

/** A live subscription that keeps RoleChangedEvents (the shared helper's query has no such case). */
async function roleEvents(app: TestApp, device: ParleyDevice) {
  const client = createClient({
    url: app.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${device.token}` },
    retryAttempts: 0,
  });
  const events: RoleEvent[] = [];
  client.subscribe<{ events: RoleEvent }>(
    {
      query: `subscription ($deviceId: ID!) { events(deviceId: $deviceId) {
        __typename ... on RoleChangedEvent { conversationId userId role } } }`,
      variables: { deviceId: device.deviceId },
    },
    {
      next: (result) => {
        if (result.data != null) events.push(result.data.events);
      },
      error: () => undefined,
      complete: () => undefined,
    },
  );
  const waitFor = async (match: (event: RoleEvent) => boolean) => {
    const deadline = Date.now() + 15_000;
    while (!events.some(match)) {
      if (Date.now() > deadline) throw new Error(`no such event; got ${JSON.stringify(events)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  await waitFor((event) => event.__typename === 'SubscribedEvent');
  return { events, waitFor, close: () => client.dispose() };
}

interface Seat {
  device: ParleyDevice;
  group: MlsGroup;
}

describeE2E('roles', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  /**
   * Alice creates a group and adds the users' devices, each user in a commit of their own (in
   * this order: the earlier a user came, the longer they stand).
   */
  async function group(
    creator: ParleyDevice,
    users: ParleyDevice[][],
  ): Promise<{ conversationId: string; seats: Seat[] }> {
    const { conversationId, group: creatorGroup } = await creator.createConversation();
    const seats: Seat[] = [{ device: creator, group: creatorGroup }];
    for (const devices of users) {
      await Promise.all(devices.map((device) => device.uploadKeyPackages(3)));
      const keyPackages = await creator.claim([present(devices[0]).userId]);
      const bundle = await creatorGroup.addMembers(keyPackages);
      dataOf(await creator.submit(conversationId, bundle));
      creatorGroup.confirmCommit();
      for (const seat of seats.slice(1)) await catchUpOne(seat, conversationId);
      for (const device of devices) {
        const { group: joined } = await device.joinFromWelcome();
        seats.push({ device, group: joined });
      }
    }
    return { conversationId, seats };
  }

  const cursors = new Map<Seat, number>();
  async function catchUpOne(seat: Seat, conversationId: string): Promise<void> {
    const { cursor } = await seat.device.catchUp(
      seat.group,
      conversationId,
      cursors.get(seat) ?? 0,
    );
    cursors.set(seat, cursor);
  }

  it("refuses a member's commit adding or removing another user's device (ADMIN_REQUIRED) and changes nothing; an admin's is accepted", async () => {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    const carol = await ParleyDevice.create(app);
    const dave = await ParleyDevice.create(app);
    await dave.uploadKeyPackages(3);
    const { conversationId, seats } = await group(alice, [[bob], [carol]]);
    const [, bobSeat] = seats as [Seat, Seat, Seat];
    expect((await view(alice, conversationId)).role).toBe('ADMIN');
    const before = await view(bob, conversationId);
    expect(before.role).toBe('MEMBER');
    expect(before.members.map((member) => [member.userId, member.role])).toEqual([
      [alice.userId, 'ADMIN'],
      [bob.userId, 'MEMBER'],
      [carol.userId, 'MEMBER'],
    ]);

    // Bob (a member) adds Dave: refused, nothing changes.
    const [daveKeyPackage] = await bob.claim([dave.userId]);
    const add = await bobSeat.group.addMembers([present(daveKeyPackage)]);
    const refusedAdd = extensionsOf(await bob.submit(conversationId, add));
    expect(refusedAdd).toMatchObject({ code: 'FORBIDDEN', reason: 'ADMIN_REQUIRED' });
    bobSeat.group.discardCommit();
    // Bob removes Carol: refused too.
    const removal = await bobSeat.group.removeMembers([carol.identity]);
    expect(extensionsOf(await bob.submit(conversationId, removal))).toMatchObject({
      code: 'FORBIDDEN',
      reason: 'ADMIN_REQUIRED',
    });
    bobSeat.group.discardCommit();
    const after = await view(bob, conversationId);
    expect(after.epoch).toBe(before.epoch);
    expect(after.members).toEqual(before.members);

    // Alice (the admin) adds Dave: accepted.
    const [daveAgain] = await alice.claim([dave.userId]);
    const aliceGroup = present(seats[0]).group;
    dataOf(await alice.submit(conversationId, await aliceGroup.addMembers([present(daveAgain)])));
    aliceGroup.confirmCommit();
    const added = await view(alice, conversationId);
    expect(added.epoch).toBe(before.epoch + 1);
    expect(added.members.find((member) => member.userId === dave.userId)?.role).toBe('MEMBER');
  });

  it('lets a member remove their own other device and a leaving device, and add their own new device', async () => {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    const bob2 = await ParleyDevice.another(app, bob);
    const bob3 = await ParleyDevice.another(app, bob);
    const carol = await ParleyDevice.create(app);
    const { conversationId, seats } = await group(alice, [[bob, bob2], [carol]]);
    const bobSeat = present(seats.find((seat) => seat.device === bob));
    await catchUpOne(bobSeat, conversationId);

    // Bob removes his own other device: allowed for a member.
    dataOf(await bob.submit(conversationId, await bobSeat.group.removeMembers([bob2.identity])));
    bobSeat.group.confirmCommit();
    // Bob adds his own new device: allowed too.
    await bob3.uploadKeyPackages(1);
    const { claimKeyPackages } = dataOf(
      await bob.gql<{
        claimKeyPackages: { keyPackages: { deviceId: string; keyPackage: string }[] };
      }>(
        `mutation ($deviceId: ID!, $userIds: [ID!]!) {
          claimKeyPackages(input: { deviceId: $deviceId, userIds: $userIds }) { keyPackages { deviceId keyPackage } }
        }`,
        { userIds: [bob.userId] },
      ),
    );
    const bob3Claim = claimKeyPackages.keyPackages.find(
      (claim) => claim.deviceId === bob3.deviceId,
    );
    const bob3Package = Buffer.from(present(bob3Claim).keyPackage, 'base64');
    const added = await bob.submit(conversationId, await bobSeat.group.addMembers([bob3Package]));
    if (added.errors === undefined) bobSeat.group.confirmCommit();
    else bobSeat.group.discardCommit();
    // Carol leaves; Bob (a member) removes her leaving device: allowed.
    dataOf(
      await carol.gql(
        `mutation ($deviceId: ID!, $conversationId: ID!) { leaveConversation(deviceId: $deviceId, conversationId: $conversationId) }`,
        { conversationId },
      ),
    );
    await catchUpOne(bobSeat, conversationId);
    dataOf(await bob.submit(conversationId, await bobSeat.group.removeMembers([carol.identity])));
    bobSeat.group.confirmCommit();
    const members = (await view(alice, conversationId)).members.map((member) => member.deviceId);
    expect(members).not.toContain(bob2.deviceId);
    expect(members).not.toContain(carol.deviceId);
    expect(added.errors).toBeUndefined();
    expect(members).toContain(bob3.deviceId);
  });

  it('sets roles: FORBIDDEN (ADMIN_REQUIRED) for a member, LAST_ADMIN for the last admin, NOT_FOUND for a stranger, RoleChangedEvent live', async () => {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    const stranger = await ParleyDevice.create(app);
    const { conversationId } = await group(alice, [[bob]]);
    const bobLive = await roleEvents(app, bob);
    try {
      expect(
        extensionsOf(
          await bob.gql(SET_ROLE, { conversationId, userId: bob.userId, role: 'ADMIN' }),
        ),
      ).toMatchObject({ code: 'FORBIDDEN', reason: 'ADMIN_REQUIRED' });
      expect(
        errorCodeOf(
          await alice.gql(SET_ROLE, { conversationId, userId: alice.userId, role: 'MEMBER' }),
        ),
      ).toBe('LAST_ADMIN');
      expect(
        errorCodeOf(
          await alice.gql(SET_ROLE, { conversationId, userId: stranger.userId, role: 'ADMIN' }),
        ),
      ).toBe('NOT_FOUND');
      expect((await view(bob, conversationId)).role).toBe('MEMBER');

      const promoted = dataOf(
        await alice.gql<{ setMemberRole: { members: { userId: string; role: string }[] } }>(
          SET_ROLE,
          { conversationId, userId: bob.userId, role: 'ADMIN' },
        ),
      );
      expect(promoted.setMemberRole.members.every((member) => member.role === 'ADMIN')).toBe(true);
      await bobLive.waitFor(
        (event) =>
          event.__typename === 'RoleChangedEvent' &&
          event.conversationId === conversationId &&
          event.userId === bob.userId &&
          event.role === 'ADMIN',
      );
      // With Bob an admin, Alice may step down.
      const stepped = dataOf(
        await alice.gql<{ setMemberRole: { role: string } }>(SET_ROLE, {
          conversationId,
          userId: alice.userId,
          role: 'MEMBER',
        }),
      );
      expect(stepped.setMemberRole.role).toBe('MEMBER');
      expect((await view(bob, conversationId)).role).toBe('ADMIN');
    } finally {
      await bobLive.close();
    }
  });

  it('promotes the longest-standing remaining user when the last admin leaves, and tells the members', async () => {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    const carol = await ParleyDevice.create(app);
    const { conversationId } = await group(alice, [[bob], [carol]]);
    const carolLive = await roleEvents(app, carol);
    try {
      dataOf(
        await alice.gql(
          `mutation ($deviceId: ID!, $conversationId: ID!) { leaveConversation(deviceId: $deviceId, conversationId: $conversationId) }`,
          { conversationId },
        ),
      );
      await carolLive.waitFor(
        (event) =>
          event.__typename === 'RoleChangedEvent' &&
          event.userId === bob.userId &&
          event.role === 'ADMIN',
      );
      expect((await view(bob, conversationId)).role).toBe('ADMIN');
      expect((await view(carol, conversationId)).role).toBe('MEMBER');
    } finally {
      await carolLive.close();
    }
  });
  it('promotes the longest-standing remaining user when the last admin deletes their last device', async () => {
    const alice = await ParleyDevice.create(app);
    const bob = await ParleyDevice.create(app);
    const carol = await ParleyDevice.create(app);
    const { conversationId } = await group(alice, [[bob], [carol]]);
    const carolLive = await roleEvents(app, carol);
    try {
      dataOf(await alice.gql(`mutation ($deviceId: ID!) { deleteDevice(deviceId: $deviceId) }`));
      await carolLive.waitFor(
        (event) =>
          event.__typename === 'RoleChangedEvent' &&
          event.userId === bob.userId &&
          event.role === 'ADMIN',
      );
      expect((await view(bob, conversationId)).role).toBe('ADMIN');
    } finally {
      await carolLive.close();
    }
  });
});
