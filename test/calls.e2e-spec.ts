import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MlsGroup } from '@parley/mls-member';
import { dataOf, errorCodeOf } from './support/graphql.js';
import { ParleyDevice, type Subscription } from './support/parley-client.js';
import {
  describeE2E,
  startTestApp,
  startTwoInstances,
  type TestApp,
  testDatabase,
  twoInstancesSkipReason,
} from './support/test-app.js';

interface Call {
  id: string;
  conversationId: string;
  media: 'AUDIO' | 'VIDEO';
  endedAt: string | null;
  participants: { deviceId: string; userId: string }[];
}

const CALL_FIELDS = 'id conversationId media endedAt participants { deviceId userId }';

function startCall(device: ParleyDevice, conversationId: string, media = 'VIDEO') {
  return device.gql<{ startCall: Call }>(
    `mutation ($deviceId: ID!, $conversationId: ID!, $media: CallMedia!) {
      startCall(input: { deviceId: $deviceId, conversationId: $conversationId, media: $media }) { ${CALL_FIELDS} }
    }`,
    { conversationId, media },
  );
}

/** joinCall, callHeartbeat, leaveCall or endCall; the raw response. */
function onCall<M extends 'joinCall' | 'callHeartbeat' | 'leaveCall' | 'endCall'>(
  device: ParleyDevice,
  mutation: M,
  callId: string,
) {
  return device.gql<Record<M, Call>>(
    `mutation ($deviceId: ID!, $callId: ID!) {
      ${mutation}(input: { deviceId: $deviceId, callId: $callId }) { ${CALL_FIELDS} }
    }`,
    { callId },
  );
}

async function running(device: ParleyDevice, conversationId: string): Promise<Call | null> {
  return dataOf(
    await device.gql<{ runningCall: Call | null }>(
      `query ($deviceId: ID!, $conversationId: ID!) {
        runningCall(deviceId: $deviceId, conversationId: $conversationId) { ${CALL_FIELDS} }
      }`,
      { conversationId },
    ),
  ).runningCall;
}

const devicesOf = (call: Call) => call.participants.map((p) => p.deviceId).sort();

/** Waits for a CallEvent of `change` by `deviceId`; returns its call. */
async function heard(
  subscription: Subscription,
  change: 'STARTED' | 'JOINED' | 'LEFT' | 'ENDED',
  deviceId: string,
  ms?: number,
): Promise<Call> {
  const event = await subscription.waitFor(
    (e) => e.callChange === change && e.callDeviceId === deviceId,
    ms,
  );
  if (event.call === undefined) throw new Error('a CallEvent without its call');
  return event.call;
}

/** A conversation of the creator and `others` (each another user), all joined by Welcome. */
async function conversation(apps: TestApp[], others: number) {
  const devices = await Promise.all(
    Array.from({ length: others + 1 }, (_, i) =>
      ParleyDevice.create(apps[i % apps.length] as TestApp),
    ),
  );
  const [creator, ...rest] = devices as [ParleyDevice, ...ParleyDevice[]];
  await Promise.all(rest.map((device) => device.uploadKeyPackages(1)));
  const { conversationId, group } = await creator.createConversation();
  const keyPackages = await creator.claim(rest.map((device) => device.userId));
  dataOf(await creator.submit(conversationId, await group.addMembers(keyPackages)));
  group.confirmCommit();
  for (const device of rest) await device.joinFromWelcome();
  return { conversationId, creator, group, others: rest };
}

describeE2E(`calls (${testDatabase})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({
      calls: { maxParticipants: 3, heartbeatTimeoutSeconds: 3, iceServers: [] },
    });
  });
  afterAll(async () => {
    await app.close();
  });

  it('starts, rings, joins, leaves and ends with the last participant; one running call per conversation', async () => {
    const { conversationId, creator: ana, others } = await conversation([app], 1);
    const [ben] = others as [ParleyDevice];
    const benLive = await ben.subscribe();
    const started = dataOf(await startCall(ana, conversationId)).startCall;
    expect(started).toMatchObject({ conversationId, media: 'VIDEO', endedAt: null });
    expect(devicesOf(started)).toEqual([ana.deviceId]);
    expect((await heard(benLive, 'STARTED', ana.deviceId)).id).toBe(started.id);
    // A second start names the running call instead of starting another.
    const second = await startCall(ben, conversationId, 'AUDIO');
    expect(errorCodeOf(second)).toBe('CONFLICT');
    expect(second.errors?.[0]?.extensions).toMatchObject({
      reason: 'CALL_RUNNING',
      callId: started.id,
    });
    const joined = dataOf(await onCall(ben, 'joinCall', started.id)).joinCall;
    expect(devicesOf(joined)).toEqual([ana.deviceId, ben.deviceId].sort());
    // Joining again is a heartbeat, not a second seat.
    expect(devicesOf(dataOf(await onCall(ben, 'joinCall', started.id)).joinCall)).toHaveLength(2);
    dataOf(await onCall(ben, 'callHeartbeat', started.id));
    expect(devicesOf((await running(ana, conversationId)) as Call)).toHaveLength(2);
    const anaLive = await ana.subscribe();
    dataOf(await onCall(ben, 'leaveCall', started.id));
    expect(devicesOf(await heard(anaLive, 'LEFT', ben.deviceId))).toEqual([ana.deviceId]);
    // Leaving twice changes nothing; the last one out ends the call.
    dataOf(await onCall(ben, 'leaveCall', started.id));
    const last = dataOf(await onCall(ana, 'leaveCall', started.id)).leaveCall;
    expect(last.endedAt).not.toBeNull();
    expect((await heard(benLive, 'ENDED', ana.deviceId)).endedAt).not.toBeNull();
    expect(await running(ben, conversationId)).toBeNull();
    const late = await onCall(ben, 'joinCall', started.id);
    expect(errorCodeOf(late)).toBe('NOT_FOUND');
    expect(late.errors?.[0]?.extensions?.reason).toBe('CALL_ENDED');
    // Ended, a new call may start.
    dataOf(await startCall(ben, conversationId, 'AUDIO'));
    await Promise.all([anaLive.close(), benLive.close()]);
  });

  it('lets only members in, only the starter or an admin end it for all, and at most the configured participants', async () => {
    const { conversationId, creator: ana, others } = await conversation([app], 3);
    const [ben, cat, dan] = others as [ParleyDevice, ParleyDevice, ParleyDevice];
    const outsider = await ParleyDevice.create(app);
    expect(errorCodeOf(await startCall(outsider, conversationId))).toBe('NOT_A_MEMBER');
    const call = dataOf(await startCall(ben, conversationId)).startCall;
    expect(errorCodeOf(await onCall(outsider, 'joinCall', call.id))).toBe('NOT_A_MEMBER');
    expect(errorCodeOf(await onCall(outsider, 'leaveCall', call.id))).toBe('NOT_A_MEMBER');
    expect(errorCodeOf(await onCall(outsider, 'endCall', call.id))).toBe('NOT_A_MEMBER');
    const peek = await outsider.gql(
      `query ($deviceId: ID!, $conversationId: ID!) { runningCall(deviceId: $deviceId, conversationId: $conversationId) { id } }`,
      { conversationId },
    );
    expect(errorCodeOf(peek)).toBe('NOT_A_MEMBER');
    // Someone else's device is not the caller's to act for.
    const forged = await outsider.gql(
      `mutation ($callId: ID!, $other: ID!) { joinCall(input: { deviceId: $other, callId: $callId }) { id } }`,
      { callId: call.id, other: cat.deviceId },
    );
    expect(errorCodeOf(forged)).toBe('FORBIDDEN');
    expect(errorCodeOf(await onCall(ana, 'callHeartbeat', call.id))).toBe('NOT_FOUND');
    dataOf(await onCall(cat, 'joinCall', call.id));
    dataOf(await onCall(dan, 'joinCall', call.id));
    expect(errorCodeOf(await onCall(ana, 'joinCall', call.id))).toBe('LIMIT_EXCEEDED');
    // Cat neither started it nor is an admin; Ana (the creator) is an admin.
    const refused = await onCall(cat, 'endCall', call.id);
    expect(errorCodeOf(refused)).toBe('FORBIDDEN');
    expect(refused.errors?.[0]?.extensions?.reason).toBe('ADMIN_REQUIRED');
    expect((await running(ana, conversationId))?.endedAt).toBeNull();
    const ended = dataOf(await onCall(ana, 'endCall', call.id)).endCall;
    expect(ended.endedAt).not.toBeNull();
    expect(ended.participants).toEqual([]);
    expect(errorCodeOf(await onCall(ana, 'joinCall', 'not-a-uuid'))).toBe('BAD_USER_INPUT');
  });

  it('drops a device removed from the conversation, a deleted device, and a silent one', async () => {
    const { conversationId, creator: ana, group, others } = await conversation([app], 2);
    const [ben, cat] = others as [ParleyDevice, ParleyDevice];
    const anaLive = await ana.subscribe();
    const call = dataOf(await startCall(ana, conversationId)).startCall;
    dataOf(await onCall(ben, 'joinCall', call.id));
    dataOf(await onCall(cat, 'joinCall', call.id));
    // Ana removes Cat from the conversation: Cat is out of the call in the same commit.
    dataOf(await ana.submit(conversationId, await removeDevice(group, cat)));
    group.confirmCommit();
    expect(devicesOf(await heard(anaLive, 'LEFT', cat.deviceId))).toEqual(
      [ana.deviceId, ben.deviceId].sort(),
    );
    expect(errorCodeOf(await onCall(cat, 'joinCall', call.id))).toBe('NOT_A_MEMBER');
    // Ben deletes his device: out of the call, the others hear it.
    dataOf(await ben.gql(`mutation ($deviceId: ID!) { deleteDevice(deviceId: $deviceId) }`, {}));
    expect(devicesOf(await heard(anaLive, 'LEFT', ben.deviceId))).toEqual([ana.deviceId]);
    // Ana goes silent: after the 3 s heartbeat timeout she is dropped and the call ends.
    const silentFrom = Date.now();
    const ended = await heard(anaLive, 'ENDED', ana.deviceId, 10_000);
    console.log(
      `calls (${testDatabase}): the silent last participant dropped and the call ended ${Date.now() - silentFrom} ms after the others left (heartbeat timeout 3 s, checked every 1 s)`,
    );
    expect(ended.endedAt).not.toBeNull();
    expect(await running(ana, conversationId)).toBeNull();
    await anaLive.close();
  });

  it('keeps a participant that sends heartbeats', async () => {
    const { conversationId, creator: ana, others } = await conversation([app], 1);
    const [ben] = others as [ParleyDevice];
    const call = dataOf(await startCall(ana, conversationId)).startCall;
    dataOf(await onCall(ben, 'joinCall', call.id));
    for (let i = 0; i < 5; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      dataOf(await onCall(ana, 'callHeartbeat', call.id));
    }
    // Five seconds on: Ana (heartbeats) is still in, Ben (none) was dropped.
    expect(devicesOf((await running(ana, conversationId)) as Call)).toEqual([ana.deviceId]);
  });
});

/** A commit removing `device`'s leaf. */
async function removeDevice(group: MlsGroup, device: ParleyDevice) {
  return group.removeMembers([device.identity]);
}

describe.skipIf(twoInstancesSkipReason !== undefined)('calls across two instances', () => {
  if (twoInstancesSkipReason !== undefined) {
    console.warn(`two-instance calls skipped: ${twoInstancesSkipReason}`);
  }
  let apps: [TestApp, TestApp];
  beforeAll(async () => {
    apps = await startTwoInstances();
  });
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });

  it('rings, joins and ends across instances', async () => {
    const { conversationId, creator: ana, others } = await conversation(apps, 1);
    const [ben] = others as [ParleyDevice];
    const [anaLive, benLive] = await Promise.all([ana.subscribe(), ben.subscribe()]);
    const call = dataOf(await startCall(ana, conversationId)).startCall;
    expect((await heard(benLive, 'STARTED', ana.deviceId)).id).toBe(call.id);
    dataOf(await onCall(ben, 'joinCall', call.id));
    expect(devicesOf(await heard(anaLive, 'JOINED', ben.deviceId))).toHaveLength(2);
    // Ben is no admin and did not start it; Ana (admin, starter) ends it for both.
    expect(errorCodeOf(await onCall(ben, 'endCall', call.id))).toBe('FORBIDDEN');
    dataOf(await onCall(ana, 'endCall', call.id));
    expect((await heard(benLive, 'ENDED', ana.deviceId)).endedAt).not.toBeNull();
    await Promise.all([anaLive.close(), benLive.close()]);
  });
});
