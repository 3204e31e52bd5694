import { DataSource, type QueryRunner } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataOf, errorCodeOf } from './support/graphql.js';
import { ParleyDevice } from './support/parley-client.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

const LIST = `query ($deviceId: ID!, $first: Int, $after: String) {
  conversations(deviceId: $deviceId, first: $first, after: $after) { id cursor epoch }
}`;
const LIST_DEFAULT = `query ($deviceId: ID!) { conversations(deviceId: $deviceId) { id } }`;
const LIST_MEMBERS = `query ($deviceId: ID!) {
  conversations(deviceId: $deviceId) { id role ackedSeq members { deviceId userId leafIndex role identity } }
}`;
const LIST_GROUP_INFO = `query ($deviceId: ID!) {
  conversations(deviceId: $deviceId) { id groupInfo }
}`;
const GROUP_INFO = `query ($deviceId: ID!, $conversationId: ID!) {
  groupInfo(deviceId: $deviceId, conversationId: $conversationId)
}`;

interface Listed {
  conversations: { id: string; cursor: string; epoch: number }[];
}

/** One statement the server sent, with the bytes of what came back (Buffers and strings). */
interface Statement {
  sql: string;
  bytes: number;
}

function sizeOf(value: unknown): number {
  if (value === null || value === undefined) return 0;
  if (Buffer.isBuffer(value)) return value.length;
  if (typeof value === 'string') return value.length;
  if (typeof value === 'number' || typeof value === 'boolean' || value instanceof Date) return 8;
  if (Array.isArray(value)) return value.reduce<number>((sum, item) => sum + sizeOf(item), 0);
  if (typeof value === 'object') {
    return Object.values(value).reduce<number>((sum, item) => sum + sizeOf(item), 0);
  }
  return 0;
}

/**
 * Records every statement of the app's query runners while `run` runs, with the size of its
 * result. Background sweepers run on their own timers meanwhile, so callers filter by SQL.
 */
async function recorded(app: TestApp, run: () => Promise<unknown>): Promise<Statement[]> {
  const dataSource = app.app.get(DataSource);
  const statements: Statement[] = [];
  const create = dataSource.createQueryRunner.bind(dataSource);
  dataSource.createQueryRunner = (mode) => {
    const runner: QueryRunner = create(mode);
    // Both of query's overloads, as one signature the wrapper can forward to.
    const query = runner.query.bind(runner) as (
      sql: string,
      parameters?: unknown[],
      structured?: boolean,
    ) => Promise<unknown>;
    runner.query = (async (sql: string, parameters?: unknown[], structured?: boolean) => {
      const result = await query(sql, parameters, structured);
      const rows =
        structured === true && typeof result === 'object' && result !== null && 'records' in result
          ? result.records
          : result;
      statements.push({ sql, bytes: sizeOf(rows) });
      return result;
    }) as typeof runner.query;
    return runner;
  };
  try {
    await run();
  } finally {
    dataSource.createQueryRunner = create;
  }
  return statements;
}

const readsGroupInfo = (statement: Statement) => statement.sql.includes('group_info');
const readsRoster = (statement: Statement) =>
  /FROM "conversation_members"/.test(statement.sql) && /JOIN "devices"/.test(statement.sql);

describeE2E('conversation reads', () => {
  let app: TestApp;
  let ana: ParleyDevice;
  let ben: ParleyDevice;
  let cy: ParleyDevice;
  /** Ana's conversations, in the order the server lists them (creation time, then id). */
  let anaIds: string[];
  /** The conversations Ben was added to by a real commit. */
  let benIds: string[];
  let withoutGroupInfo: string;

  beforeAll(async () => {
    app = await startTestApp();
    [ana, ben, cy] = await Promise.all([
      ParleyDevice.create(app),
      ParleyDevice.create(app),
      ParleyDevice.create(app),
    ]);
    await ben.uploadKeyPackages(3);
    const created: string[] = [];
    benIds = [];
    for (let i = 0; i < 7; i++) {
      const { conversationId, group } = await ana.createConversation({ withGroupInfo: i !== 6 });
      created.push(conversationId);
      if (i < 3) {
        const bundle = await group.addMembers(await ana.claim([ben.userId]));
        dataOf(await ana.submit(conversationId, bundle));
        group.confirmCommit();
        benIds.push(conversationId);
      }
    }
    withoutGroupInfo = created[6] ?? '';
    // Two conversations created in the same microsecond: the id decides, and a cursor between
    // them must not skip or repeat either (the cursor keeps microseconds, a Date does not).
    await app.app
      .get(DataSource)
      .query(
        `UPDATE "conversations" SET "created_at" = '2026-01-02 03:04:05.123456+00' WHERE "id" = ANY($1::uuid[])`,
        [[created[3], created[4]]],
      );
    const ordered = await app.app
      .get(DataSource)
      .query<{ id: string }[]>(
        `SELECT "id" FROM "conversations" WHERE "id" = ANY($1::uuid[]) ORDER BY "created_at", "id"`,
        [created],
      );
    anaIds = ordered.map((row) => row.id);
  });
  afterAll(async () => {
    await app.close();
  });

  describe('pagination', () => {
    it('walks every conversation exactly once, in creation order, for every page size', async () => {
      for (const first of [1, 2, 3, 7, 100]) {
        const seen: string[] = [];
        let after: string | null = null;
        let pages = 0;
        for (;;) {
          const { conversations }: Listed = dataOf(await ana.gql<Listed>(LIST, { first, after }));
          pages += 1;
          seen.push(...conversations.map((conversation) => conversation.id));
          if (conversations.length < first) break;
          after = conversations.at(-1)?.cursor ?? null;
        }
        expect(seen, `first: ${first}`).toEqual(anaIds);
        expect(pages).toBe(Math.floor(anaIds.length / first) + 1);
      }
      // Without `first`, a page of 50: all seven.
      expect(dataOf(await ana.gql<Listed>(LIST_DEFAULT)).conversations.map((c) => c.id)).toEqual(
        anaIds,
      );
    });

    it('refuses a bad cursor or page size with BAD_USER_INPUT and no data', async () => {
      const [someone] = dataOf(await ana.gql<Listed>(LIST, { first: 1 })).conversations;
      const forged = Buffer.from(`c1:12:not-a-uuid-${'x'.repeat(20)}`).toString('base64url');
      for (const variables of [
        { after: 'nonsense!' },
        { after: forged },
        { after: Buffer.from('hello').toString('base64url') },
        { after: someone?.id },
        { after: 'x'.repeat(200) },
        { first: 0 },
        { first: 101 },
        { first: -1 },
      ]) {
        const response = await ana.gql<Listed>(LIST, variables);
        expect(errorCodeOf(response), JSON.stringify(variables)).toBe('BAD_USER_INPUT');
        expect(response.data ?? null).toBeNull();
      }
    });

    it('shows a user none of the conversations it is not in, and another device of the same user none either', async () => {
      expect(dataOf(await cy.gql<Listed>(LIST)).conversations).toEqual([]);
      const anaLaptop = await ParleyDevice.another(app, ana);
      expect(dataOf(await anaLaptop.gql<Listed>(LIST)).conversations).toEqual([]);
      // Someone else's device is not the caller's to list.
      expect(errorCodeOf(await cy.gql<Listed>(LIST, { deviceId: ana.deviceId }))).not.toBe(
        'INTERNAL_SERVER_ERROR',
      );
      expect((await cy.gql<Listed>(LIST, { deviceId: ana.deviceId })).data ?? null).toBeNull();
      // Ben is in the three he was added to; a cursor of a conversation he is not in still only
      // pages through his own.
      expect(dataOf(await ben.gql<Listed>(LIST)).conversations.map((c) => c.id)).toEqual(
        anaIds.filter((id) => benIds.includes(id)),
      );
      const anaFirst = dataOf(await ana.gql<Listed>(LIST, { first: 1 })).conversations[0];
      const after = dataOf(await ben.gql<Listed>(LIST, { after: anaFirst?.cursor }));
      expect(after.conversations.every((c) => benIds.includes(c.id))).toBe(true);
    });
  });

  it('reads every member of a page in one query and never reads a GroupInfo that is not selected', async () => {
    let listed: {
      conversations: {
        id: string;
        role: string;
        members: { deviceId: string; userId: string; leafIndex: number; role: string }[];
      }[];
    } = { conversations: [] };
    const statements = await recorded(app, async () => {
      listed = dataOf(await ana.gql<typeof listed>(LIST_MEMBERS));
    });
    expect(listed.conversations.map((c) => c.id)).toEqual(anaIds);
    for (const conversation of listed.conversations) {
      const expected = benIds.includes(conversation.id)
        ? [
            { deviceId: ana.deviceId, userId: ana.userId, leafIndex: 0, role: 'ADMIN' },
            { deviceId: ben.deviceId, userId: ben.userId, leafIndex: 1, role: 'MEMBER' },
          ]
        : [{ deviceId: ana.deviceId, userId: ana.userId, leafIndex: 0, role: 'ADMIN' }];
      expect(conversation.members).toMatchObject(expected);
      expect(conversation.role).toBe('ADMIN');
    }
    const ours = statements.filter((s) => /"conversation/.test(s.sql));
    expect(statements.filter(readsRoster)).toHaveLength(1);
    expect(statements.filter(readsGroupInfo)).toEqual([]);
    // The page (with the caller's seats and roles) and the rosters: two statements for 7
    // conversations, not one or two per conversation.
    expect(ours.filter((s) => /^\s*SELECT/i.test(s.sql))).toHaveLength(2);
    console.log(
      `conversations of 7 (members selected): ${ours.length} statements about conversations, ` +
        `${ours.reduce((sum, s) => sum + s.bytes, 0)} bytes read`,
    );
  });

  it('reads the GroupInfos in one query when selected, and they are the ones the groupInfo query gives', async () => {
    let listed: { conversations: { id: string; groupInfo: string | null }[] } = {
      conversations: [],
    };
    const statements = await recorded(app, async () => {
      listed = dataOf(await ana.gql<typeof listed>(LIST_GROUP_INFO));
    });
    expect(statements.filter(readsGroupInfo)).toHaveLength(1);
    expect(statements.filter(readsRoster)).toEqual([]);
    const bytes = statements.filter(readsGroupInfo).reduce((sum, s) => sum + s.bytes, 0);
    console.log(`conversations of 7 (groupInfo selected): ${bytes} bytes of GroupInfo read`);
    expect(bytes).toBeGreaterThan(0);
    for (const conversation of listed.conversations) {
      const { groupInfo } = dataOf(
        await ana.gql<{ groupInfo: string | null }>(GROUP_INFO, {
          conversationId: conversation.id,
        }),
      );
      expect(conversation.groupInfo).toBe(groupInfo);
      if (conversation.id === withoutGroupInfo) expect(groupInfo).toBeNull();
      else expect(groupInfo).not.toBeNull();
    }
    // The GroupInfo of a conversation Ben is in after the commit that added him (epoch 1).
    const benListed = dataOf(await ben.gql<typeof listed>(LIST_GROUP_INFO));
    for (const conversation of benListed.conversations) {
      const { groupInfo } = dataOf(
        await ana.gql<{ groupInfo: string | null }>(GROUP_INFO, {
          conversationId: conversation.id,
        }),
      );
      expect(conversation.groupInfo).toBe(groupInfo);
    }
  });

  it('checks membership without reading the GroupInfo (conversation, messages); the groupInfo query reads it once', async () => {
    const conversationId = benIds[0] ?? '';
    const statements = await recorded(app, async () => {
      dataOf(
        await ben.gql(
          `query ($deviceId: ID!, $conversationId: ID!) {
            conversation(deviceId: $deviceId, conversationId: $conversationId) { id epoch lastSeq ackedSeq role }
          }`,
          { conversationId },
        ),
      );
      dataOf(
        await ben.gql(
          `query ($deviceId: ID!, $conversationId: ID!) {
            messages(deviceId: $deviceId, conversationId: $conversationId, after: 0, first: 10) { entries { seq } }
          }`,
          { conversationId },
        ),
      );
    });
    expect(statements.some((s) => s.sql.includes('"conversations"'))).toBe(true);
    expect(statements.filter(readsGroupInfo)).toEqual([]);
    const groupInfoRead = await recorded(app, async () => {
      dataOf(await ben.gql(GROUP_INFO, { conversationId }));
    });
    expect(groupInfoRead.filter(readsGroupInfo)).toHaveLength(1);
  });

  it('leaves a conversation the device is leaving out of its list', async () => {
    const leaving = benIds[2] ?? '';
    dataOf(
      await ben.gql(
        `mutation ($deviceId: ID!, $conversationId: ID!) {
          leaveConversation(deviceId: $deviceId, conversationId: $conversationId)
        }`,
        { conversationId: leaving },
      ),
    );
    expect(dataOf(await ben.gql<Listed>(LIST)).conversations.map((c) => c.id)).toEqual(
      anaIds.filter((id) => benIds.includes(id) && id !== leaving),
    );
  });
});
