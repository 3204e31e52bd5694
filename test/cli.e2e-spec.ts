import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { eventually } from './support/sdk-clients.js';
import { e2eSkipReason, startTestApp, type TestApp, testDatabase } from './support/test-app.js';

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const cli = join(root, 'apps/cli/dist/main.js');

// The CLI does not depend on the server's database: it runs in the PGlite project only. It runs
// compiled, as users run it, built once for all suites by test/support/build-once.ts.
describe.skipIf(e2eSkipReason !== undefined || testDatabase === 'postgres')(
  'the parley CLI',
  () => {
    let app: TestApp;
    let home: string;
    beforeAll(async () => {
      const buildFailure = inject('buildFailure');
      if (buildFailure !== null) throw new Error(buildFailure);
      app = await startTestApp();
      home = await mkdtemp(join(tmpdir(), 'parley-cli-'));
    }, 300_000);
    afterAll(async () => {
      await app.close();
      await rm(home, { recursive: true, force: true });
    });

    const env = (profile: string) => ({
      ...process.env,
      PARLEY_SERVER: app.url,
      PARLEY_PASSPHRASE: `passphrase of ${profile}`,
      PARLEY_PASSWORD: 'correct horse battery',
    });
    const parley = async (profile: string, ...args: string[]) => {
      const { stdout } = await run(
        'node',
        [cli, '--state', join(home, `${profile}.state`), '--json', ...args],
        {
          env: env(profile),
        },
      );
      return stdout
        .trim()
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    };

    function chat(
      profile: string,
      conversationId: string,
    ): { process: ChildProcessWithoutNullStreams; lines: string[] } {
      const child = spawn(
        'node',
        [cli, '--state', join(home, `${profile}.state`), 'chat', conversationId],
        {
          env: env(profile),
        },
      );
      const lines: string[] = [];
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) =>
        lines.push(...chunk.split('\n').filter((line) => line !== '')),
      );
      return { process: child, lines };
    }

    it('lets two parley processes chat through a real server, each seeing the other', async () => {
      for (const name of ['ana', 'ben']) {
        await parley(name, 'signup', name);
        await parley(name, 'register', `${name}'s terminal`);
      }
      const [created] = await parley('ana', 'create', 'ben');
      const conversationId = String(created?.conversationId);
      expect(created?.devices).toBe(2);

      const anaChat = chat('ana', conversationId);
      const benChat = chat('ben', conversationId.slice(0, 8));
      anaChat.process.stdin.write('hello ben\n');
      await eventually(() => benChat.lines.some((line) => line.endsWith('ana: hello ben')), 30_000);
      benChat.process.stdin.write('hi ana\n');
      await eventually(() => anaChat.lines.some((line) => line.endsWith('ben: hi ana')), 30_000);
      for (const session of [anaChat, benChat]) {
        session.process.stdin.end('/quit\n');
        await new Promise((resolve) => session.process.once('exit', resolve));
      }

      const history = await parley('ben', 'history', conversationId);
      expect(history.map((message) => message.text)).toEqual(['hello ben', 'hi ana']);
      const listed = await parley('ana', 'conversations');
      expect(listed.map((entry) => entry.conversationId)).toEqual([conversationId]);
    });
  },
);
