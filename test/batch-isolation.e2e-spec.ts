import { createHash } from 'node:crypto';
import { DataSource } from 'typeorm';
import { MessageAppender } from '../apps/server/src/messages/message-appender.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { dataOf, errorCodeOf } from './support/graphql.js';
import type { MlsGroup } from '@parley/mls-member';
import { ParleyDevice } from './support/parley-client.js';
import { describeE2E, startTestApp, type TestApp, testDatabase } from './support/test-app.js';

/**
 * A bad request fails alone. Input hygiene keeps NUL and friends out before any resolver, so the
 * member that breaks the batch transaction here is made by the database itself: a trigger that
 * refuses the insert of one message's bytes, as an unforeseen constraint would.
 */
describeE2E(`a bad message in a batch fails alone (${testDatabase})`, () => {
  let app: TestApp;
  let dataSource: DataSource;
  let alice: ParleyDevice;
  let group: MlsGroup;
  let conversationId: string;

  beforeAll(async () => {
    app = await startTestApp();
    dataSource = app.app.get(DataSource);
    alice = await ParleyDevice.create(app);
    ({ conversationId, group } = await alice.createConversation());
  });
  afterAll(async () => {
    await dataSource.query(`DROP TRIGGER IF EXISTS "parley_test_refuse" ON "log_entries"`);
    await dataSource.query(`DROP FUNCTION IF EXISTS "parley_test_refuse"()`);
    await app.close();
  });

  /** Makes the database refuse to store these bytes (the trigger stays for the later test). */
  async function refuse(bytes: Uint8Array): Promise<void> {
    const digest = createHash('sha256').update(bytes).digest('hex');
    await dataSource.query(
      `CREATE OR REPLACE FUNCTION "parley_test_refuse"() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW."digest" = decode('${digest}', 'hex') THEN
           RAISE EXCEPTION 'refused by the test';
         END IF;
         RETURN NEW;
       END $$`,
    );
    await dataSource.query(`DROP TRIGGER IF EXISTS "parley_test_refuse" ON "log_entries"`);
    await dataSource.query(
      `CREATE TRIGGER "parley_test_refuse" BEFORE INSERT ON "log_entries"
       FOR EACH ROW EXECUTE FUNCTION "parley_test_refuse"()`,
    );
  }

  it('retries a failed batch one by one: the others are stored in order, the culprit fails', async () => {
    // Straight to the appender in one tick, so that the batch is certain to hold all of them
    // (the first one's transaction is under way while the next 40 queue) on either database.
    const appender = app.app.get(MessageAppender);
    const bytes: Uint8Array[] = [];
    for (let i = 0; i < 41; i += 1) bytes.push(await group.encrypt(`batched ${i}`));
    await refuse(bytes[20] ?? new Uint8Array());
    const before = (await alice.entries(conversationId)).length;
    const settled = await Promise.allSettled(
      bytes.map((data) =>
        appender.append({
          userId: alice.userId,
          deviceId: alice.deviceId,
          conversationId,
          groupId: group.groupId,
          epoch: 0n,
          data: Buffer.from(data),
          digest: createHash('sha256').update(data).digest(),
        }),
      ),
    );
    expect(settled.map((outcome) => outcome.status)).toEqual(
      bytes.map((_, i) => (i === 20 ? 'rejected' : 'fulfilled')),
    );
    const seqs = settled.flatMap((outcome) =>
      outcome.status === 'fulfilled' ? [Number(outcome.value.seq)] : [],
    );
    // In the order they were appended, with no number left for the culprit.
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => before + 1 + i));
    const stored = (await alice.entries(conversationId)).slice(before);
    expect(stored.map((entry) => entry.message)).toEqual(
      bytes.filter((_, i) => i !== 20).map((data) => Buffer.from(data).toString('base64')),
    );
  });

  // Over HTTP, as the issue saw it: on PostgreSQL these form batches of several (PGlite serves
  // one session, so there they mostly run one by one); the test above makes sure of batching.
  it('stores the 40 well-formed concurrent sends and fails only the culprit', async () => {
    const good: Uint8Array[] = [];
    for (let i = 0; i < 40; i += 1) good.push(await group.encrypt(`well-formed ${i}`));
    const culprit = await group.encrypt('refused by the database');
    await refuse(culprit);
    const before = (await alice.entries(conversationId)).length;
    // The culprit in the middle, so that it shares a batch with sends before and after it.
    const messages = [...good.slice(0, 20), culprit, ...good.slice(20)];
    const responses = await Promise.all(messages.map((bytes) => alice.send(conversationId, bytes)));

    const culpritResponse = responses[20];
    if (culpritResponse === undefined) throw new Error('no response for the culprit');
    // A database refusal nobody foresaw is a server bug, and says so — but only to its sender.
    expect(errorCodeOf(culpritResponse)).toBe('INTERNAL_SERVER_ERROR');
    const goodResponses = responses.filter((_, i) => i !== 20);
    const seqs = goodResponses.map((response) => dataOf(response).sendMessage.seq);
    expect(new Set(seqs).size).toBe(40);

    const entries = await alice.entries(conversationId);
    expect(entries).toHaveLength(before + 40);
    const stored = entries.slice(before);
    // No gap in seq: the culprit took no number.
    expect(stored.map((entry) => entry.seq)).toEqual(
      Array.from({ length: 40 }, (_, i) => (stored[0]?.seq ?? 0) + i),
    );
    expect(stored.map((entry) => entry.message).sort()).toEqual(
      good.map((bytes) => Buffer.from(bytes).toString('base64')).sort(),
    );
    // Each sender got the entry that holds its bytes.
    for (const [i, response] of goodResponses.entries()) {
      const seq = dataOf(response).sendMessage.seq;
      const bytes = good[i];
      if (bytes === undefined) throw new Error('missing message');
      expect(stored.find((entry) => entry.seq === seq)?.message).toBe(
        Buffer.from(bytes).toString('base64'),
      );
    }
  });
});
