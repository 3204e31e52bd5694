import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetentionService } from '../apps/server/src/messages/retention.service.js';
import { b64, dataOf, errorCodeOf } from './support/graphql.js';
import type { MlsGroup } from '@parley/mls-member';
import { ParleyDevice } from './support/parley-client.js';
import {
  describeE2E,
  startTestApp,
  startTwoInstances,
  type TestApp,
  testDatabase,
  twoInstancesSkipReason,
} from './support/test-app.js';

interface Sent {
  seq: number;
  epoch: number;
  senderDeviceId: string;
}

/** Sends bytes and returns the entry the server answers with (raw response). */
function send(device: ParleyDevice, conversationId: string, message: Uint8Array) {
  return device.gql<{ sendMessage: Sent }>(
    `mutation ($deviceId: ID!, $conversationId: ID!, $message: Bytes!) {
      sendMessage(input: { deviceId: $deviceId, conversationId: $conversationId, message: $message }) {
        seq epoch senderDeviceId
      }
    }`,
    { conversationId, message: b64(message) },
  );
}

/**
 * How many entries hold exactly these bytes, and how many entries there are, as `reader` sees
 * them (the creator sees everything; a member added later sees only what follows its join).
 */
async function stored(reader: ParleyDevice, conversationId: string, message: Uint8Array) {
  const entries = await reader.entries(conversationId);
  return {
    copies: entries.filter((entry) => entry.message === b64(message)).length,
    total: entries.length,
  };
}

/** A conversation of `size` devices on the given instances (round robin), all joined. */
async function group(apps: TestApp[], size: number) {
  const devices = await Promise.all(
    Array.from({ length: size }, (_, i) => ParleyDevice.create(apps[i % apps.length] as TestApp)),
  );
  const [creator, ...others] = devices as [ParleyDevice, ...ParleyDevice[]];
  await Promise.all(others.map((device) => device.uploadKeyPackages(1)));
  const { conversationId, group: creatorGroup } = await creator.createConversation();
  const keyPackages = await creator.claim(others.map((device) => device.userId));
  dataOf(await creator.submit(conversationId, await creatorGroup.addMembers(keyPackages)));
  creatorGroup.confirmCommit();
  const members: { device: ParleyDevice; group: MlsGroup }[] = [
    { device: creator, group: creatorGroup },
  ];
  for (const device of others)
    members.push({ device, group: (await device.joinFromWelcome()).group });
  return { conversationId, members };
}

describeE2E(`idempotent sendMessage (${testDatabase})`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('stores a retry of the same bytes once and answers it with the same entry', async () => {
    const { conversationId, members } = await group([app], 2);
    const [alice, bob] = members as [(typeof members)[0], (typeof members)[0]];
    const live = await bob.device.subscribe();
    const bytes = await alice.group.encrypt('once, however often it is sent');
    const first = dataOf(await send(alice.device, conversationId, bytes)).sendMessage;
    const retry = dataOf(await send(alice.device, conversationId, bytes)).sendMessage;
    expect(retry).toEqual(first);
    expect(await stored(alice.device, conversationId, bytes)).toEqual({ copies: 1, total: 2 });
    // A later message takes the next seq: the retry used none.
    const next = await alice.device.say(alice.group, conversationId, 'next');
    expect(next).toBe(first.seq + 1);
    await live.waitFor((event) => event.entry?.seq === next);
    const heard = live.events.filter((event) => event.entry?.message === b64(bytes));
    expect(heard).toHaveLength(1);
    const processed = await bob.group.processMessage(bytes);
    expect(processed.kind === 'application' && Buffer.from(processed.plaintext).toString()).toBe(
      'once, however often it is sent',
    );
    await live.close();
  });

  it("answers another member's replay with the original entry and stores nothing", async () => {
    const { conversationId, members } = await group([app], 3);
    const [alice, bob, carol] = members as [
      (typeof members)[0],
      (typeof members)[0],
      (typeof members)[0],
    ];
    const bytes = await alice.group.encrypt('mine');
    const original = dataOf(await send(alice.device, conversationId, bytes)).sendMessage;
    const replayed = dataOf(await send(bob.device, conversationId, bytes)).sendMessage;
    expect(replayed).toEqual(original);
    expect(replayed.senderDeviceId).toBe(alice.device.deviceId);
    expect(dataOf(await send(carol.device, conversationId, bytes)).sendMessage).toEqual(original);
    expect(await stored(alice.device, conversationId, bytes)).toEqual({ copies: 1, total: 2 });
    // Someone outside the conversation learns nothing from replaying: NOT_A_MEMBER, as always.
    const outsider = await ParleyDevice.create(app);
    expect(errorCodeOf(await send(outsider, conversationId, bytes))).toBe('NOT_A_MEMBER');
    expect(await stored(alice.device, conversationId, bytes)).toEqual({ copies: 1, total: 2 });
  });

  it('stores the same bytes sent concurrently once, in one batch or across batches', async () => {
    const { conversationId, members } = await group([app], 4);
    const alice = members[0] as (typeof members)[0];
    // Ten messages, each sent by every member at once, in a shuffled order: the appender
    // batches them per conversation, so duplicates meet inside a batch and across batches.
    const messages = await Promise.all(
      Array.from({ length: 10 }, (_, i) => alice.group.encrypt(`concurrent ${i}`)),
    );
    const sends = messages.flatMap((bytes) => members.map((member) => ({ member, bytes })));
    sends.sort(() => Math.random() - 0.5);
    const answers = await Promise.all(
      sends.map(async ({ member, bytes }) => ({
        bytes,
        seq: dataOf(await send(member.device, conversationId, bytes)).sendMessage.seq,
      })),
    );
    for (const bytes of messages) {
      const seqs = new Set(answers.filter((a) => a.bytes === bytes).map((a) => a.seq));
      expect(seqs.size).toBe(1);
    }
    expect(new Set(answers.map((a) => a.seq)).size).toBe(10);
    const entries = await alice.device.entries(conversationId);
    expect(entries).toHaveLength(11);
    expect(new Set(entries.map((entry) => entry.message)).size).toBe(11);
    console.log(
      `idempotency: ${sends.length} concurrent sends of ${messages.length} messages stored ${entries.length - 1} entries`,
    );
  });

  it('still answers a replay once the epoch moved past the window, while the entry is kept', async () => {
    const { conversationId, members } = await group([app], 2);
    const alice = members[0] as (typeof members)[0];
    const bytes = await alice.group.encrypt('old');
    const original = dataOf(await send(alice.device, conversationId, bytes)).sendMessage;
    for (let i = 0; i < app.config.messageEpochWindow + 1; i++) {
      dataOf(await alice.device.submit(conversationId, await alice.group.update()));
      alice.group.confirmCommit();
    }
    expect(dataOf(await send(alice.device, conversationId, bytes)).sendMessage).toEqual(original);
    // New bytes of that old epoch are still refused.
    const [, bob] = members as [(typeof members)[0], (typeof members)[0]];
    const stale = await bob.group.encrypt('too old');
    expect(errorCodeOf(await send(bob.device, conversationId, stale))).toBe('INVALID_MESSAGE');
  });
  it('answers a replay after retention deleted the entry, while its epoch is in the window', async () => {
    const { conversationId, members } = await group([app], 2);
    const [alice, bob] = members as [(typeof members)[0], (typeof members)[0]];
    const bytes = await alice.group.encrypt('kept as a digest');
    const original = dataOf(await send(alice.device, conversationId, bytes)).sendMessage;
    const retention = app.app.get(RetentionService);
    await retention.deleteThrough(conversationId, String(original.seq));
    expect(dataOf(await send(bob.device, conversationId, bytes)).sendMessage).toEqual(original);
    const { messages } = dataOf(await alice.device.page(conversationId, 0));
    expect(messages.entries).toEqual([]);
    expect(messages.lastSeq).toBe(original.seq);
    // Once the epoch has left the window, what retention kept goes too: such bytes are refused
    // as out of the window, like any message of that epoch.
    for (let i = 0; i < app.config.messageEpochWindow + 1; i++) {
      dataOf(await alice.device.submit(conversationId, await alice.group.update()));
      alice.group.confirmCommit();
    }
    await retention.purgeExpired();
    const kept = await app.app
      .get(DataSource)
      .query<{ count: string }[]>(
        `SELECT count(*) AS "count" FROM "log_entry_digests" WHERE "conversation_id" = $1`,
        [conversationId],
      );
    expect(kept[0]?.count).toBe('0');
    expect(errorCodeOf(await send(bob.device, conversationId, bytes))).toBe('INVALID_MESSAGE');
  });
});

if (twoInstancesSkipReason !== undefined)
  console.warn(`two-instance idempotency skipped: ${twoInstancesSkipReason}`);

describe.skipIf(twoInstancesSkipReason !== undefined)(
  'idempotent sendMessage on two instances',
  () => {
    let a: TestApp;
    let b: TestApp;
    beforeAll(async () => {
      [a, b] = await startTwoInstances();
    });
    afterAll(async () => {
      await b.close();
      await a.close();
    });

    it('stores bytes sent on both instances at once a single time, with one seq for all', async () => {
      const { conversationId, members } = await group([a, b], 4);
      const alice = members[0] as (typeof members)[0];
      const rounds = 20;
      for (let round = 0; round < rounds; round++) {
        const bytes = await alice.group.encrypt(`round ${round}`);
        // Every member sends the same bytes on A and on B at the same time.
        const answers = await Promise.all(
          members.flatMap((member) =>
            [a, b].map(async (app) =>
              dataOf(await send(member.device.via(app), conversationId, bytes)),
            ),
          ),
        );
        expect(new Set(answers.map((answer) => answer.sendMessage.seq)).size).toBe(1);
      }
      const entries = await alice.device.entries(conversationId);
      expect(entries.filter((entry) => entry.kind === 'APPLICATION')).toHaveLength(rounds);
      expect(new Set(entries.map((entry) => entry.message)).size).toBe(entries.length);
      console.log(
        `idempotency (two instances): ${rounds * members.length * 2} sends of ${rounds} messages stored ${rounds} entries`,
      );
    });
  },
);
