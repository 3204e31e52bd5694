import {
  encodeEnvelope,
  type GraphqlTransport,
  type MlsEngineFactory,
  ParleyClient,
  type ReceiptSignal,
  receiptEnvelope,
  tsMlsEngineFactory,
  type TypingSignal,
} from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import { DataSource } from 'typeorm';
import WebSocket from 'ws';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { EventBus } from '../apps/server/src/events/event-bus.js';
import { conversationChannel } from '../apps/server/src/live/live-event.js';
import { SendEphemeralDocument } from '../libs/client/src/graphql/generated.js';
import { b64, errorCodeOf, signUpWithDevice } from './support/graphql.js';
import { dumpDatabase } from './support/database-dump.js';
import { eventually, joined, sdkUser } from './support/sdk-clients.js';
import { OwnParley } from './support/own-parley.js';
import { Terminal } from './support/terminal.js';
import {
  describeE2E,
  e2eSkipReason,
  startTestApp,
  type TestApp,
  testConfig,
  testDatabase,
} from './support/test-app.js';

/**
 * Ephemeral signals (issue 11, item 4): typing indicators and read receipts are MLS application
 * messages sent with sendEphemeral, checked like any message, fanned out to the live devices and
 * written nowhere — no table, no `messages` page, no log line. A device with readReceipts: false
 * sends none; non-members and removed devices are refused (NOT_A_MEMBER) and nothing goes out.
 */
const openMls = createOpenMlsEngineFactory();
const engines: [string, MlsEngineFactory, MlsEngineFactory][] = [
  ['ts-mls', tsMlsEngineFactory, openMls],
  ['OpenMLS', openMls, tsMlsEngineFactory],
];
// Small enough that the over-size case needs no huge request, large enough for any signal.
const MESSAGE_BYTES = 4096;

interface Published {
  type: string;
  senderDeviceId?: string;
  data?: string;
}

describeE2E.each(engines)(
  'typing and read receipts in a group created by %s',
  (_, first, other) => {
    let app: TestApp;
    const clients: ParleyClient[] = [];
    const logLines: string[] = [];

    beforeAll(async () => {
      app = await startTestApp(
        { limits: { ...testConfig().limits, messageBytes: MESSAGE_BYTES } },
        {
          logStream: {
            write: (line: string) => {
              logLines.push(line);
            },
          },
        },
      );
    });
    afterAll(async () => {
      await Promise.all(clients.map((client) => client.close()));
      await app.close();
    });

    async function user(engine: MlsEngineFactory, readReceipts?: boolean) {
      if (readReceipts === undefined) {
        const made = await sdkUser(app, engine);
        clients.push(made.client);
        return made.client;
      }
      const client = await ParleyClient.open({
        url: app.url,
        engine,
        webSocketImpl: WebSocket,
        keyPackageTarget: 5,
        readReceipts,
        onError: (error: unknown) => {
          console.error('SDK background error:', error);
        },
      });
      clients.push(client);
      await client.signUp(
        `quiet_${Math.random().toString(36).slice(2, 10)}`,
        'correct horse battery',
      );
      await client.registerDevice('laptop');
      await client.connect();
      return client;
    }

    /** Everything the server publishes on the conversation's channel, as a subscriber sees it. */
    async function watch(conversationId: string) {
      const stream = app.app.get(EventBus).open([conversationChannel(conversationId)]);
      await stream.ready();
      const seen: Published[] = [];
      void (async () => {
        for await (const { event } of stream) seen.push(event);
      })().catch(() => undefined);
      return {
        seen,
        close: () => {
          stream.close();
        },
      };
    }

    /** Every table of the test database as text (at least the schema's own). */
    async function dumpTables(): Promise<string> {
      const dump = await dumpDatabase(app);
      expect(dump.tables).toBeGreaterThan(5);
      return dump.text;
    }

    const transportOf = (client: ParleyClient) =>
      Reflect.get(client, 'transport') as GraphqlTransport;

    it('reach live members, are stored nowhere, and leave MLS and history as they were', async () => {
      const ana = await user(first);
      const ben = await user(other);
      const cy = await user(first, false);
      const group = await ana.createConversation([ben.userId ?? '', cy.userId ?? '']);
      const benView = await joined(ben, group.id);
      const cyView = await joined(cy, group.id);
      const bus = await watch(group.id);
      const typingAtAna: TypingSignal[] = [];
      const receiptsAtAna: ReceiptSignal[] = [];
      const typingAtCy: TypingSignal[] = [];
      ana.onTyping((signal) => typingAtAna.push(signal));
      ana.onReceipt((signal) => receiptsAtAna.push(signal));
      cy.onTyping((signal) => typingAtCy.push(signal));

      await group.send('hello');
      await eventually(() => benView.unreadCount === 1 && cyView.unreadCount === 1);
      const lastSeqBefore = await app.app
        .get(DataSource)
        .query<{ last_seq: string }[]>(`SELECT "last_seq" FROM "conversations" WHERE "id" = $1`, [
          group.id,
        ]);

      // Typing: heard by every other live member, at most one per 3 s.
      expect(await benView.typing()).toBe(true);
      expect(await benView.typing()).toBe(false);
      const benSignal = { conversationId: group.id, userId: ben.userId, deviceId: ben.deviceId };
      await eventually(() => typingAtAna.length === 1 && typingAtCy.length === 1);
      expect(typingAtAna[0]).toEqual(benSignal);
      expect(typingAtCy[0]).toEqual(benSignal);

      // Read receipt: "ben read up to seq N".
      await benView.markRead();
      await eventually(() => receiptsAtAna.length === 1);
      expect(receiptsAtAna[0]).toEqual({ ...benSignal, seq: benView.processedSeq });

      // cy reads too, with receipts off: none from cy, though ben's next one (sent after) arrives.
      await cyView.markRead();
      expect(cyView.unreadCount).toBe(0);
      await group.send('again');
      await eventually(() => benView.unreadCount === 1);
      await benView.markRead();
      await eventually(() => receiptsAtAna.length === 2);
      expect(receiptsAtAna.map((receipt) => receipt.deviceId)).toEqual([
        ben.deviceId,
        ben.deviceId,
      ]);
      const signals = bus.seen.filter((event) => event.type === 'ephemeral');
      expect(signals.map((event) => event.senderDeviceId)).toEqual([
        ben.deviceId,
        ben.deviceId,
        ben.deviceId,
      ]);

      // A receipt made at an older epoch (inside the window) still decrypts after a commit.
      const late = await benView.encryptOutgoing(encodeEnvelope(receiptEnvelope(1)));
      await group.updateKeys();
      await eventually(() => benView.processedSeq === group.processedSeq);
      await transportOf(ben).request(SendEphemeralDocument, {
        input: { deviceId: ben.deviceId ?? '', conversationId: group.id, message: b64(late) },
      });
      await eventually(() => receiptsAtAna.length === 3);
      expect(receiptsAtAna[2]?.seq).toBe(1);

      // The MLS state goes on: messages both ways after the signals, in the new epoch.
      await benView.send('after the signals');
      await eventually(() => group.history().some((m) => m.text === 'after the signals'));
      // Signals are not messages: neither history nor unread counts nor the log's seq.
      expect(group.history().map((m) => m.text)).toEqual(['hello', 'again', 'after the signals']);
      expect(group.unreadCount).toBe(1);
      const [conversation] = await app.app
        .get(DataSource)
        .query<{ last_seq: string }[]>(`SELECT "last_seq" FROM "conversations" WHERE "id" = $1`, [
          group.id,
        ]);
      // Entries since: ana's 'again', the commit, ben's message — nothing for the 4 signals.
      expect(BigInt(conversation?.last_seq ?? '0')).toBe(
        BigInt(lastSeqBefore[0]?.last_seq ?? '0') + 3n,
      );

      // Nowhere on the server: every table of the database, every log line.
      const sent = bus.seen.filter((event) => event.type === 'ephemeral');
      expect(sent).toHaveLength(4);
      const tables = await dumpTables();
      const logs = logLines.join('\n');
      for (const event of sent) {
        const bytes = Buffer.from(event.data ?? '', 'base64');
        expect(bytes.length).toBeGreaterThan(32);
        for (const needle of [
          event.data ?? '',
          bytes.toString('hex'),
          bytes.toString('hex').slice(-64),
          bytes.toString('base64').slice(-44),
        ]) {
          expect(tables.includes(needle)).toBe(false);
          expect(logs.includes(needle)).toBe(false);
        }
      }
      expect(logLines.length).toBeGreaterThan(0);

      // A non-member, and a device a commit removed: NOT_A_MEMBER, and nothing goes out.
      const outsider = await signUpWithDevice(app);
      const sendAs = (token: string, deviceId: string, message: string) =>
        app.gql(
          `mutation ($input: SendMessageInput!) { sendEphemeral(input: $input) }`,
          { input: { deviceId, conversationId: group.id, message } },
          token,
        );
      const bytes = sent[0]?.data ?? '';
      expect(errorCodeOf(await sendAs(outsider.token, outsider.deviceId, bytes))).toBe(
        'NOT_A_MEMBER',
      );
      await group.removeUsers([cy.userId ?? '']);
      await eventually(() => cyView.status === 'removed');
      await expect(
        transportOf(cy).request(SendEphemeralDocument, {
          input: { deviceId: cy.deviceId ?? '', conversationId: group.id, message: bytes },
        }),
      ).rejects.toMatchObject({ code: 'NOT_A_MEMBER' });
      await expect(cyView.typing()).rejects.toBeDefined();

      // Over the size limit: the typed limit error, and nothing goes out.
      const huge = b64(new Uint8Array(MESSAGE_BYTES + 1));
      const tooBig = await sendAs(outsider.token, outsider.deviceId, huge);
      expect(errorCodeOf(tooBig)).toBe('LIMIT_EXCEEDED');

      // Once the throttle lets ben type again, that one arrives — and nothing of the refused ones
      // went out before it on the channel.
      await eventually(() => benView.typing(), 10_000);
      await eventually(() => typingAtAna.length === 2);
      expect(
        bus.seen.filter((event) => event.type === 'ephemeral').map((event) => event.senderDeviceId),
      ).toEqual([ben.deviceId, ben.deviceId, ben.deviceId, ben.deviceId, ben.deviceId]);
      bus.close();
    });
  },
);

const cli = join(new URL('..', import.meta.url).pathname, 'apps/cli/dist/main.js');

/**
 * `parley chat` on two pseudo-terminals: ben typing shows "ben typing…" in ana's prompt, and
 * once ben's chat showed ana's line, ana's shows "✓ read by ben". PGlite project only: the CLI
 * does not depend on the server's database.
 */
describe.skipIf(e2eSkipReason !== undefined || testDatabase === 'postgres')(
  'typing and read marks in parley chat',
  () => {
    let server: OwnParley;
    let home: string;
    let conversationId = '';
    const terminals: Terminal[] = [];

    const env = (profile: string) => ({
      ...process.env,
      HOME: home,
      PARLEY_SERVER: server.url,
      PARLEY_PASSPHRASE: `passphrase of ${profile}`,
      PARLEY_PASSWORD: 'correct horse battery',
    });
    function parley(profile: string, ...args: string[]): Promise<{ code: number; out: string }> {
      const child = spawn(process.execPath, [cli, '--profile', profile, ...args], {
        env: env(profile),
      });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
      child.stdin.end();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`parley ${args.join(' ')} still running:\n${out}`));
        }, 60_000);
        child.once('exit', (code) => {
          clearTimeout(timer);
          resolve({ code: code ?? -1, out });
        });
      });
    }
    const terminal = (profile: string, args: string[]) => {
      const session = new Terminal(
        [process.execPath, cli, '--profile', profile, ...args],
        env(profile),
      );
      terminals.push(session);
      return session;
    };

    beforeAll(async () => {
      const buildFailure = inject('buildFailure');
      if (buildFailure !== null) throw new Error(buildFailure);
      home = await mkdtemp(join(tmpdir(), 'parley-signals-'));
      server = await OwnParley.forSuite('signals', home);
      for (const name of ['ana', 'ben']) {
        expect((await parley(name, 'signup', name)).code).toBe(0);
        expect((await parley(name, 'register', `${name}'s terminal`)).code).toBe(0);
      }
      const created = await parley('ana', 'create', 'ben');
      expect(created.code).toBe(0);
      conversationId = /created conversation (\S+)/.exec(created.out)?.[1] ?? '';
      expect(conversationId).not.toBe('');
    }, 300_000);
    afterEach(() => {
      for (const session of terminals.splice(0)) session.kill();
    });
    afterAll(async () => {
      await (server as OwnParley | undefined)?.dispose();
      await rm(home, { recursive: true, force: true });
    });

    it('shows "ben typing…" while ben types, and "✓ read by ben" once ben saw the line', async () => {
      const ana = terminal('ana', ['chat', conversationId.slice(0, 8)]);
      const ben = terminal('ben', ['chat', conversationId.slice(0, 8)]);
      await ana.waitFor('Ctrl-C ends', 60_000);
      await ben.waitFor('Ctrl-C ends', 60_000);
      // Both chats are live once their banners are out; keys typed until ana sees it.
      expect(ana.text.includes('typing…')).toBe(false);
      await eventually(async () => {
        ben.type('h');
        await new Promise((resolve) => setTimeout(resolve, 200));
        return ana.text.includes('(ben typing…) > ');
      }, 30_000);
      ben.type('\x15');
      ana.type('are you there?\r');
      await ben.waitFor(/ana: are you there\?/, 30_000);
      await ana.waitFor(/✓ read by ben/, 30_000);
      expect(ben.text.includes('read by')).toBe(false);
      ana.type('/quit\r');
      ben.type('/quit\r');
      expect(await ana.exit(10_000)).toBe(0);
      expect(await ben.exit(10_000)).toBe(0);
    });
  },
);
