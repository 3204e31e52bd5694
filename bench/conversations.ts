/**
 * `conversations(deviceId)` on big groups: one device in N conversations of M members each,
 * timed through the real server over HTTP. Not a test: it prints figures.
 *
 * The conversations are created through the API (a real ts-mls group and GroupInfo each); the
 * other M − 1 members are written straight into the tables (users, devices, seats, roles) and
 * each GroupInfo is replaced by random bytes of a 1,000-member GroupInfo's size, since a read
 * never parses either and building 1,000-member groups through MLS would take minutes per group.
 * Run alone (`npm run bench` builds it; then `node bench/dist/bench/conversations.js`), or from
 * run.ts with PARLEY_BENCH_SECTIONS=conversations. PARLEY_BENCH_CONVERSATIONS_COUNTS (10,50),
 * _MEMBERS (1000), _RUNS (21) and _GROUP_INFO_BYTES (236544) change the run.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { b64, BenchDevice } from './client.js';
import { countQueries, freshDatabase, queryCounter, startParley } from './server.js';

/** What one kind of request cost, per request. */
export interface ReadFigures {
  /** The selection, in words. */
  selection: string;
  conversations: number;
  members: number;
  medianMs: number;
  p90Ms: number;
  /** SQL statements the server sent per request (all of its pool's, sweepers included). */
  statements: number;
  responseBytes: number;
}

/** The figures of one run, and the machine's load while it ran. */
export interface ConversationsReport {
  runs: number;
  groupInfoBytes: number;
  loadAverage: number;
  figures: ReadFigures[];
}

/** Settings of a run. */
export interface ConversationsOptions {
  /** Conversation counts measured, ascending (the device is in exactly that many). */
  counts: number[];
  members: number;
  runs: number;
  groupInfoBytes: number;
  log(line: string): void;
}

/** The fields the SDK asks for in every sync (libs/client ConversationFields), members included. */
const SDK_SELECTION = `id groupId kind ciphersuite epoch lastSeq ackedSeq peerUserId role
  messageTimerSeconds members { userId deviceId identity leafIndex leaving role } createdAt`;

const SELECTIONS: { selection: string; query: string }[] = [
  {
    selection: 'the SDK’s fields (members)',
    query: `query ($deviceId: ID!) { conversations(deviceId: $deviceId) { ${SDK_SELECTION} } }`,
  },
  {
    selection: 'a chat list (no members)',
    query: `query ($deviceId: ID!) { conversations(deviceId: $deviceId) { id kind epoch lastSeq ackedSeq role } }`,
  },
  {
    // Only where the server has Conversation.groupInfo (skipped on an older server).
    selection: 'groupInfo only',
    query: `query ($deviceId: ID!) { conversations(deviceId: $deviceId) { id groupInfo } }`,
  },
];

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))] ?? Number.NaN;
}

/** Times `conversations` for each count and selection on a fresh database. */
export async function conversationsBench(
  adminUrl: string,
  options: ConversationsOptions,
): Promise<ConversationsReport> {
  const database = await freshDatabase(adminUrl);
  countQueries();
  const parley = await startParley(database.url);
  const figures: ReadFigures[] = [];
  const loads: number[] = [];
  try {
    const owner = await BenchDevice.signUp(parley.url);
    const others = options.members - 1;
    // The other members: users and devices written directly (see the file's comment).
    await database.admin.query(
      `INSERT INTO "users" ("id", "username", "password_hash")
         SELECT gen_random_uuid(), 'member_' || i, 'unused' FROM generate_series(1, $1) i`,
      [others],
    );
    await database.admin.query(
      `INSERT INTO "devices" ("id", "user_id", "name", "key_package_low_water")
         SELECT lpad(to_hex(row_number() OVER (ORDER BY u."username")), 16, '0'), u."id", 'bench', 10
           FROM "users" u WHERE u."username" LIKE 'member\\_%'`,
    );
    const groupInfo = randomBytes(options.groupInfoBytes);
    let created = 0;
    for (const count of options.counts) {
      for (; created < count; created++) {
        const group = await owner.mls.createGroup(randomBytes(16));
        const { createConversation } = await owner.gql<{ createConversation: { id: string } }>(
          `mutation ($deviceId: ID!, $groupId: Bytes!, $groupInfo: Bytes) {
            createConversation(input: { deviceId: $deviceId, groupId: $groupId, groupInfo: $groupInfo }) { id }
          }`,
          { groupId: b64(group.groupId), groupInfo: b64(await group.groupInfo()) },
        );
        const id = createConversation.id;
        await database.admin.query(
          `INSERT INTO "conversation_members"
             ("conversation_id", "device_id", "leaf_index", "joined_seq", "acked_seq")
           SELECT $1, d."id", row_number() OVER (ORDER BY d."id"), 1, 0
             FROM "devices" d WHERE d."name" = 'bench' AND d."id" <> $2`,
          [id, owner.deviceId],
        );
        await database.admin.query(
          `INSERT INTO "conversation_roles" ("conversation_id", "user_id", "role", "joined_seq")
           SELECT $1, d."user_id", 'MEMBER', 1 FROM "devices" d
            WHERE d."name" = 'bench' AND d."id" <> $2`,
          [id, owner.deviceId],
        );
        await database.admin.query(
          `UPDATE "conversations" SET "group_info" = $2, "epoch" = 1 WHERE "id" = $1`,
          [id, groupInfo],
        );
      }
      await database.admin.query('ANALYZE');
      for (const { selection, query } of SELECTIONS) {
        const body = JSON.stringify({ query, variables: { deviceId: owner.deviceId } });
        const request = async () => {
          const response = await fetch(parley.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${owner.token}` },
            body,
          });
          return response.text();
        };
        const probe = JSON.parse(await request()) as {
          data?: { conversations: unknown[] } | null;
          errors?: unknown[];
        };
        if (probe.errors !== undefined || probe.data == null) {
          options.log(
            `  ${selection}: not offered by this server (${JSON.stringify(probe.errors)})`,
          );
          continue;
        }
        if (probe.data.conversations.length !== count) {
          throw new Error(`listed ${probe.data.conversations.length} of ${count} conversations`);
        }
        for (let i = 0; i < 3; i++) await request();
        const times: number[] = [];
        let bytes = 0;
        const statementsBefore = queryCounter.queries;
        for (let i = 0; i < options.runs; i++) {
          const started = performance.now();
          bytes = Buffer.byteLength(await request());
          times.push(performance.now() - started);
        }
        loads.push(os.loadavg()[0] ?? Number.NaN);
        const figure: ReadFigures = {
          selection,
          conversations: count,
          members: options.members,
          medianMs: percentile(times, 0.5),
          p90Ms: percentile(times, 0.9),
          statements: (queryCounter.queries - statementsBefore) / options.runs,
          responseBytes: bytes,
        };
        figures.push(figure);
        options.log(
          `  ${String(count)} × ${String(options.members)} members, ${selection}: median ` +
            `${figure.medianMs.toFixed(1)} ms, p90 ${figure.p90Ms.toFixed(1)} ms, ` +
            `${figure.statements.toFixed(1)} statements, ${String(bytes)} response bytes`,
        );
      }
    }
  } finally {
    await parley.close();
    await database.drop();
  }
  return {
    runs: options.runs,
    groupInfoBytes: options.groupInfoBytes,
    loadAverage: loads.length === 0 ? Number.NaN : Math.max(...loads),
    figures,
  };
}

/** The report as a Markdown table. */
export function conversationsTable(report: ConversationsReport): string {
  const lines = [
    '| conversations × members | selection | median ms | p90 ms | statements | response bytes |',
    '|---|---|---:|---:|---:|---:|',
    ...report.figures.map(
      (f) =>
        `| ${String(f.conversations)} × ${String(f.members)} | ${f.selection} | ${f.medianMs.toFixed(1)} | ` +
        `${f.p90Ms.toFixed(1)} | ${f.statements.toFixed(1)} | ${String(f.responseBytes)} |`,
    ),
  ];
  return `${lines.join('\n')}\n\n${String(report.runs)} requests each after 3 warm-ups; GroupInfo ${String(report.groupInfoBytes)} bytes per conversation; load average (1 min) up to ${report.loadAverage.toFixed(2)} on ${String(os.cpus().length)} cores.`;
}

const env = (name: string, fallback: string) => process.env[name] ?? fallback;

/** The settings from PARLEY_BENCH_CONVERSATIONS_* variables. */
export function conversationsOptions(log: (line: string) => void): ConversationsOptions {
  return {
    counts: env('PARLEY_BENCH_CONVERSATIONS_COUNTS', '10,50').split(',').map(Number),
    members: Number(env('PARLEY_BENCH_CONVERSATIONS_MEMBERS', '1000')),
    runs: Number(env('PARLEY_BENCH_CONVERSATIONS_RUNS', '21')),
    // A GroupInfo with the ratchet tree of 1,000 members measured 231 KiB (issue 14).
    groupInfoBytes: Number(env('PARLEY_BENCH_CONVERSATIONS_GROUP_INFO_BYTES', String(231 * 1024))),
    log,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const adminUrl = env('PARLEY_BENCH_DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/test');
  const report = await conversationsBench(
    adminUrl,
    conversationsOptions((line) => {
      console.log(line);
    }),
  );
  console.log(`\n${conversationsTable(report)}`);
  process.exit(0);
}
