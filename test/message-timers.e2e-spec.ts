import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MlsGroup } from '@parley/mls-member';
import { b64, dataOf, errorCodeOf } from './support/graphql.js';
import { Metrics } from '../apps/server/src/metrics/metrics.js';
import { ParleyDevice } from './support/parley-client.js';
import {
  describeE2E,
  e2eSkipReason,
  startTestApp,
  startTwoInstances,
  type TestApp,
  testDatabase,
  twoInstancesSkipReason,
} from './support/test-app.js';

/** A log entry with what the timer adds to it. */
interface TimedEntry {
  seq: number;
  kind: 'COMMIT' | 'APPLICATION' | 'TIMER';
  createdAt: string;
  expiresAt: string | null;
  timerSeconds: number | null;
  message: string;
}

const TIMED_FIELDS = 'seq kind createdAt expiresAt timerSeconds message';

/** Sets the conversation's timer with an encrypted timer-change message; the raw response. */
async function setTimer(
  device: ParleyDevice,
  group: MlsGroup,
  conversationId: string,
  seconds: number,
) {
  const message = await group.encrypt(JSON.stringify({ v: 1, type: 'timer', seconds }));
  return device.gql<{ setMessageTimer: TimedEntry }>(
    `mutation ($deviceId: ID!, $conversationId: ID!, $message: Bytes!, $seconds: Int!) {
      setMessageTimer(input: { deviceId: $deviceId, conversationId: $conversationId,
                               message: $message, seconds: $seconds }) { ${TIMED_FIELDS} }
    }`,
    { conversationId, message: b64(message), seconds },
  );
}

/** Sends a message and returns its entry with its expiry. */
async function say(device: ParleyDevice, group: MlsGroup, conversationId: string, text: string) {
  const response = await device.gql<{ sendMessage: TimedEntry }>(
    `mutation ($deviceId: ID!, $conversationId: ID!, $message: Bytes!) {
      sendMessage(input: { deviceId: $deviceId, conversationId: $conversationId, message: $message }) {
        ${TIMED_FIELDS}
      }
    }`,
    { conversationId, message: b64(await group.encrypt(text)) },
  );
  return dataOf(response).sendMessage;
}

/** The whole log as `reader` may read it, with the ranges the timer deleted. */
async function read(reader: ParleyDevice, conversationId: string, after = 0) {
  const { messages } = dataOf(
    await reader.gql<{
      messages: {
        gap: { fromSeq: number; toSeq: number } | null;
        expired: { fromSeq: number; toSeq: number }[];
        entries: TimedEntry[];
        hasMore: boolean;
      };
    }>(
      `query ($deviceId: ID!, $conversationId: ID!, $after: SafeInt!) {
        messages(deviceId: $deviceId, conversationId: $conversationId, after: $after, first: 100) {
          gap { fromSeq toSeq } expired { fromSeq toSeq } entries { ${TIMED_FIELDS} } hasMore
        }
      }`,
      { conversationId, after },
    ),
  );
  return messages;
}

/** The seqs of the conversation's application messages still stored. */
async function storedSeqs(dataSource: DataSource, conversationId: string) {
  const rows: { seq: string | number }[] = await dataSource.query(
    `SELECT "seq" FROM "log_entries" WHERE "conversation_id" = $1 AND "kind" = 'APPLICATION'`,
    [conversationId],
  );
  return new Set(rows.map((row) => Number(row.seq)));
}

/** The database's clock, in milliseconds: expiries are stamped by it. */
async function databaseNow(dataSource: DataSource): Promise<number> {
  const rows: { now: Date }[] = await dataSource.query(`SELECT clock_timestamp() AS "now"`);
  return new Date(present(rows[0], 'clock').now).getTime();
}

/** A two-device conversation: the creator and a member added by Welcome. */
async function pair(app: TestApp) {
  const [ana, ben] = await Promise.all([ParleyDevice.create(app), ParleyDevice.create(app)]);
  await ben.uploadKeyPackages(1);
  const { conversationId, group: anaGroup } = await ana.createConversation();
  const keyPackages = await ana.claim([ben.userId]);
  dataOf(await ana.submit(conversationId, await anaGroup.addMembers(keyPackages)));
  anaGroup.confirmCommit();
  const { group: benGroup } = await ben.joinFromWelcome();
  return { conversationId, ana, anaGroup, ben, benGroup };
}

/** The value, which the test knows is there (a failed expectation otherwise). */
function present<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`${what} is missing`);
  return value;
}

/** The conversation's timer as the server tells `device`. */
async function serverTimer(device: ParleyDevice, conversationId: string): Promise<number> {
  const { conversation } = dataOf(
    await device.gql<{ conversation: { messageTimerSeconds: number } }>(
      `query ($deviceId: ID!, $conversationId: ID!) {
        conversation(deviceId: $deviceId, conversationId: $conversationId) { messageTimerSeconds }
      }`,
      { conversationId },
    ),
  );
  return conversation.messageTimerSeconds;
}

const expiryOf = (entry: TimedEntry) => Date.parse(present(entry.expiresAt, 'expiresAt'));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describeE2E(`message timers on the server (${testDatabase})`, () => {
  let app: TestApp;
  let dataSource: DataSource;
  beforeAll(async () => {
    app = await startTestApp();
    dataSource = app.app.get(DataSource);
  });
  afterAll(async () => {
    await app.close();
  });

  it('refuses timers outside 5 s–24 h and non-members, and stores nothing', async () => {
    const { conversationId, ana, anaGroup } = await pair(app);
    const outsider = await ParleyDevice.create(app);
    const before = (await read(ana, conversationId)).entries.length;
    for (const seconds of [-1, 1, 4, 86_401, 1_000_000]) {
      const refused = await setTimer(ana, anaGroup, conversationId, seconds);
      expect(errorCodeOf(refused), `${seconds} s`).toBe('BAD_USER_INPUT');
      expect(refused.errors?.[0]?.extensions?.field).toBe('seconds');
    }
    const notMember = await setTimer(outsider, anaGroup, conversationId, 30);
    expect(errorCodeOf(notMember)).toBe('NOT_A_MEMBER');
    // A timer change travels as an application message; a commit is not one.
    const asCommit = await outsider.gql(
      `mutation ($deviceId: ID!, $conversationId: ID!, $message: Bytes!) {
        setMessageTimer(input: { deviceId: $deviceId, conversationId: $conversationId,
                                 message: $message, seconds: 30 }) { seq }
      }`,
      { conversationId, message: b64(new Uint8Array([0, 1, 0, 1, 0, 0])) },
    );
    expect(errorCodeOf(asCommit)).toBe('INVALID_MESSAGE');
    expect((await read(ana, conversationId)).entries).toHaveLength(before);
    expect(await serverTimer(ana, conversationId)).toBe(0);
  });

  it('deletes messages 5 s after storage (± 1 s), keeps commits and timer entries, and an offline device gets an expired marker', async () => {
    const { conversationId, ana, anaGroup, ben } = await pair(app);
    const timer = dataOf(await setTimer(ana, anaGroup, conversationId, 5)).setMessageTimer;
    expect(timer).toMatchObject({ kind: 'TIMER', timerSeconds: 5, expiresAt: null });
    const first = await anaGroup.encrypt('gone in five');
    const firstSeq = dataOf(await ana.send(conversationId, first)).sendMessage.seq;
    const sent = [
      present(
        (await read(ana, conversationId)).entries.find((entry) => entry.seq === firstSeq),
        'the first message',
      ),
      await say(ana, anaGroup, conversationId, 'me too'),
    ];
    const [gone, last] = sent as [TimedEntry, TimedEntry];
    for (const entry of sent) {
      expect(entry.kind).toBe('APPLICATION');
      expect(expiryOf(entry) - Date.parse(entry.createdAt)).toBe(5_000);
    }
    // Ben is offline: he reads nothing until well past the expiry.
    const deletedAt = new Map<number, number>();
    const deadline = expiryOf(last) + 2_000;
    while (Date.now() < deadline && deletedAt.size < sent.length) {
      const now = await databaseNow(dataSource);
      const stored = await storedSeqs(dataSource, conversationId);
      for (const entry of sent) {
        if (!stored.has(entry.seq) && !deletedAt.has(entry.seq)) deletedAt.set(entry.seq, now);
      }
      await sleep(25);
    }
    const lateness = sent.map(
      (entry) => present(deletedAt.get(entry.seq), `deletion of ${entry.seq}`) - expiryOf(entry),
    );
    console.log(
      `message timers (${testDatabase}): 5 s timer, deleted ${lateness.map((ms) => `${ms} ms`).join(', ')} after expiry (poll every 25 ms)`,
    );
    for (const late of lateness) {
      // Never early (the poll sees the row until its expiry), at most 1 s late.
      expect(late).toBeGreaterThanOrEqual(0);
      expect(late).toBeLessThan(1_000);
    }
    await sleep(Math.max(0, expiryOf(last) + 10_000 - Date.now()));
    // Ten seconds on, Ben's first read: the timer entry and the commit, a marker, no bytes.
    const page = await read(ben, conversationId);
    expect(page.entries.map((entry) => entry.kind)).toEqual(['TIMER']);
    expect(page.expired).toEqual([{ fromSeq: gone.seq, toSeq: last.seq }]);
    expect(page.gap).toBeNull();
    const all = await read(ana, conversationId);
    expect(all.entries.map((entry) => entry.kind)).toEqual(['COMMIT', 'TIMER']);
    const texts: { data: Buffer }[] = await dataSource.query(`SELECT "data" FROM "log_entries"`);
    for (const entry of sent) {
      expect(texts.some((row) => b64(row.data) === entry.message)).toBe(false);
    }
    // A late retry of expired bytes gets the entry they had, and is not stored again.
    expect(dataOf(await ana.send(conversationId, first)).sendMessage.seq).toBe(firstSeq);
    expect(await storedSeqs(dataSource, conversationId)).toEqual(new Set());
  });

  it('applies a timer change from its seq on: earlier messages keep their expiry', async () => {
    const { conversationId, ana, anaGroup, ben, benGroup } = await pair(app);
    dataOf(await setTimer(ana, anaGroup, conversationId, 60));
    const underMinute = await say(ben, benGroup, conversationId, 'one minute');
    dataOf(await setTimer(ben, benGroup, conversationId, 0));
    const untimed = await say(ana, anaGroup, conversationId, 'kept');
    dataOf(await setTimer(ana, anaGroup, conversationId, 7));
    const underSeven = await say(ben, benGroup, conversationId, 'seven seconds');
    const span = (entry: TimedEntry) =>
      entry.expiresAt === null ? null : Date.parse(entry.expiresAt) - Date.parse(entry.createdAt);
    expect([span(underMinute), span(untimed), span(underSeven)]).toEqual([60_000, null, 7_000]);
    // What the log says is what was stored: the entries read back carry the same expiries.
    const entries = (await read(ana, conversationId)).entries;
    expect(entries.map((entry) => [entry.kind, entry.timerSeconds, span(entry)])).toEqual([
      ['COMMIT', null, null],
      ['TIMER', 60, null],
      ['APPLICATION', null, 60_000],
      ['TIMER', 0, null],
      ['APPLICATION', null, null],
      ['TIMER', 7, null],
      ['APPLICATION', null, 7_000],
    ]);
    expect(await serverTimer(ben, conversationId)).toBe(7);
  });

  it('never pages out expired bytes, even before the sweeper deleted them', async () => {
    const { conversationId, ana, anaGroup, ben } = await pair(app);
    dataOf(await setTimer(ana, anaGroup, conversationId, 5));
    const entry = await say(ana, anaGroup, conversationId, 'read it while you can');
    // Keep the row past its expiry, as a late sweeper would: the reads must not show it.
    // (The sweeper's next wake-up is up to 2 s away, so the row stays for the read below.)
    const [updated]: [unknown[], number] = await dataSource.query(
      `UPDATE "log_entries" SET "expires_at" = now() - interval '1 second'
        WHERE "conversation_id" = $1 AND "seq" = $2 RETURNING "seq"`,
      [conversationId, entry.seq],
    );
    expect(updated).toHaveLength(1);
    const page = await read(ben, conversationId);
    expect(page.entries.map((e) => e.seq)).not.toContain(entry.seq);
    expect(page.expired).toEqual([{ fromSeq: entry.seq, toSeq: entry.seq }]);
  });
});

// Two instances on PostgreSQL; on PGlite, which one instance holds alone, the same load on one.
const instances = testDatabase === 'postgres' ? 2 : 1;
const loadSkipReason = instances === 2 ? twoInstancesSkipReason : e2eSkipReason;
describe.skipIf(loadSkipReason !== undefined)(
  `message timers under load (${instances} instance${instances === 2 ? 's' : ''}, ${testDatabase})`,
  () => {
    if (loadSkipReason !== undefined) console.warn(`expiry under load skipped: ${loadSkipReason}`);
    let apps: TestApp[];
    beforeAll(async () => {
      apps = instances === 2 ? await startTwoInstances() : [await startTestApp()];
    });
    afterAll(async () => {
      await Promise.all(apps.map((app) => app.close()));
    });

    it('200 conversations, timers of 5–10 s, steady traffic through every instance: every message deleted, none early, p99 lateness < 1 s', async () => {
      const dataSource = present(apps[0], 'app').app.get(DataSource);
      const CONVERSATIONS = 200;
      const CREATORS = 20;
      const creators = await Promise.all(
        Array.from({ length: CREATORS }, (_, i) =>
          ParleyDevice.create(apps[i % instances] as TestApp),
        ),
      );
      const conversations: { device: ParleyDevice; group: MlsGroup; id: string }[] = [];
      for (let i = 0; i < CONVERSATIONS; i += 1) {
        const device = present(creators[i % CREATORS], 'creator').via(
          apps[i % instances] as TestApp,
        );
        const { conversationId, group } = await device.createConversation();
        // Seeded spread of 5–10 s, so that expiries interleave across conversations.
        dataOf(await setTimer(device, group, conversationId, 5 + (i % 6)));
        conversations.push({ device, group, id: conversationId });
      }
      // Watch the table while the traffic runs: when each row disappears, against its expiry
      // (both on the database's clock). A message is watched once its send was answered before
      // the poll's snapshot, so a row not yet committed is never taken for a deleted one.
      const expiries = new Map<string, { expiresAt: number; knownAt: number }>();
      const gone = new Map<string, number>();
      const early: string[] = [];
      // An object, so that the watcher sees the change (and the compiler that it can change).
      const traffic = { running: true };
      const watch = (async () => {
        while (traffic.running || gone.size < expiries.size) {
          const startedAt = Date.now();
          const [row]: { now: Date; keys: string[] }[] = await dataSource.query(
            `SELECT statement_timestamp() AS "now",
                    coalesce(array_agg("conversation_id" || ':' || "seq"), '{}') AS "keys"
               FROM "log_entries" WHERE "expires_at" IS NOT NULL`,
          );
          const { now, keys } = present(row, 'poll');
          const snapshot = new Date(now).getTime();
          const stored = new Set(keys);
          for (const [key, { expiresAt, knownAt }] of expiries) {
            if (knownAt >= startedAt || gone.has(key) || stored.has(key)) continue;
            gone.set(key, snapshot - expiresAt);
            if (snapshot < expiresAt) early.push(key);
          }
          if (
            !traffic.running &&
            Date.now() > Math.max(...[...expiries.values()].map((e) => e.expiresAt)) + 5_000
          ) {
            return;
          }
          await sleep(25);
        }
      })();
      // Steady traffic for 12 s: each conversation sends every ~2 s, through both instances.
      const ROUNDS = 6;
      const started = Date.now();
      for (let round = 0; round < ROUNDS; round += 1) {
        const roundStart = Date.now();
        await Promise.all(
          conversations.map(async ({ device, group, id }, i) => {
            await sleep((i * 2_000) / CONVERSATIONS);
            const entry = await say(device, group, id, `round ${round}`);
            expiries.set(`${id}:${entry.seq}`, { expiresAt: expiryOf(entry), knownAt: Date.now() });
          }),
        );
        await sleep(Math.max(0, roundStart + 2_000 - Date.now()));
      }
      const sendSeconds = (Date.now() - started) / 1000;
      traffic.running = false;
      await watch;
      const lateness = [...gone.values()].sort((a, b) => a - b);
      const pct = (p: number) =>
        present(lateness[Math.min(lateness.length - 1, Math.floor(p * lateness.length))], 'p');
      console.log(
        `message timers (${instances} instance(s), ${testDatabase}): ${expiries.size} messages in ${CONVERSATIONS} conversations over ${sendSeconds.toFixed(1)} s; deleted ${gone.size}; lateness p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${lateness.at(-1)} ms (upper bounds: table polled every ~25 ms); early ${early.length}`,
      );
      // Every instance sweeps; SKIP LOCKED splits the rows between them, none deleted twice.
      const perInstance = await Promise.all(
        apps.map(async (app) => {
          const { values } = await app.app.get(Metrics).expiryLateness.get();
          return values.find((value) => value.metricName?.endsWith('_count'))?.value ?? 0;
        }),
      );
      console.log(
        `message timers (${testDatabase}): deleted per instance ${perInstance.join(' + ')}`,
      );
      expect(perInstance.reduce((sum, n) => sum + n, 0)).toBe(expiries.size);
      expect(early).toEqual([]);
      expect(gone.size).toBe(expiries.size);
      expect(pct(0.99)).toBeLessThan(1_000);
    }, 240_000);
  },
);
