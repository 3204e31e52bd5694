import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { OwnParley } from './support/own-parley.js';
import { Terminal } from './support/terminal.js';
import { e2eSkipReason, testDatabase } from './support/test-app.js';

const root = new URL('..', import.meta.url).pathname;
// PARLEY_TEST_CLI runs the suite against another build (an older commit's, to watch it fail).
const cli = process.env.PARLEY_TEST_CLI ?? join(root, 'apps/cli/dist/main.js');

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

if (testDatabase === 'postgres')
  console.warn(
    'cli-timers: PGlite project only — the CLI talks GraphQL to a child server; the timers on PostgreSQL are covered by sdk-timers',
  );

/**
 * `parley timer` and disappearing messages as people see them: the command (durations, refusals
 * with exit 2, help), the chat banner, a change printed in a running chat (in a pseudo-terminal),
 * an expired line marked there, and `history` without the expired lines. One child server.
 */
describe.skipIf(e2eSkipReason !== undefined || testDatabase === 'postgres')(
  'parley timer and disappearing messages in the CLI',
  () => {
    let server: OwnParley;
    let home: string;
    let conversationId = '';

    beforeAll(async () => {
      const buildFailure = inject('buildFailure');
      if (buildFailure !== null) throw new Error(buildFailure);
      home = await mkdtemp(join(tmpdir(), 'parley-cli-timers-'));
      server = await OwnParley.forSuite('cli-timers', home);
      for (const name of ['ana', 'ben']) {
        expect((await parley(name, 'signup', name)).code).toBe(0);
        expect((await parley(name, 'register', `${name}'s terminal`)).code).toBe(0);
      }
      const created = await parley('ana', 'create', 'ben');
      expect(created.code).toBe(0);
      conversationId = /created conversation (\S+)/.exec(created.stdout)?.[1] ?? '';
      expect(conversationId).not.toBe('');
    }, 300_000);
    afterAll(async () => {
      await (server as OwnParley | undefined)?.dispose();
      await rm(home, { recursive: true, force: true });
    });

    const env = (profile: string) => ({
      ...process.env,
      HOME: home,
      PARLEY_SERVER: server.url,
      PARLEY_PASSPHRASE: `passphrase of ${profile}`,
      PARLEY_PASSWORD: 'correct horse battery',
    });

    function parley(profile: string, ...args: string[]): Promise<Ran> {
      const child = spawn(process.execPath, [cli, '--profile', profile, ...args], {
        env: env(profile),
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      child.stdin.end();
      return new Promise<Ran>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`parley ${args.join(' ')} still running:\n${stdout}${stderr}`));
        }, 60_000);
        child.once('exit', (code) => {
          clearTimeout(timer);
          resolve({ code: code ?? -1, stdout, stderr });
        });
      });
    }
    const terminals: Terminal[] = [];
    afterEach(() => {
      for (const session of terminals.splice(0)) session.kill();
    });
    const terminal = (profile: string, args: string[]) => {
      const session = new Terminal(
        [process.execPath, cli, '--profile', profile, ...args],
        env(profile),
      );
      terminals.push(session);
      return session;
    };

    it('refuses durations outside 5 s–24 h with one line and exit 2; --help shows examples', async () => {
      for (const wrong of ['2s', '25h', '86401', 'soon']) {
        const ran = await parley('ana', 'timer', conversationId, wrong);
        expect([ran.code, ran.stdout], wrong).toEqual([2, '']);
        expect(ran.stderr.trim().split('\n'), wrong).toHaveLength(1);
        expect(ran.stderr).toMatch(/^parley: /);
      }
      expect((await parley('ana', 'timer', conversationId, '2s')).stderr.trim()).toBe(
        'parley: a message timer is 5s to 24h, or off (2s is shorter)',
      );
      const help = await parley('ana', 'timer', '--help');
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('usage: parley [options] timer <conversation>');
      expect(help.stdout).toContain('parley --profile ana timer 3f2a 30s');
      expect(help.stdout).toContain('parley --profile ana timer 3f2a off');
      const shown = await parley('ben', 'timer', conversationId.slice(0, 8));
      expect([shown.code, shown.stdout.trim()]).toEqual([
        0,
        `messages in ${conversationId} do not disappear`,
      ]);
    }, 120_000);

    it('sets the timer; a running chat prints the change and marks the expired line; history drops it', async () => {
      const chat = terminal('ben', ['chat', conversationId.slice(0, 8)]);
      await chat.waitFor('type and press Enter', 60_000);
      expect(chat.text).not.toContain('disappear');

      const set = await parley('ana', 'timer', conversationId.slice(0, 8), '5s');
      expect([set.code, set.stdout.trim()]).toEqual([
        0,
        `messages in ${conversationId} now disappear after 5s`,
      ]);
      await chat.waitFor(/ana set disappearing messages to 5s/);

      const line = `this line will vanish ${Math.random().toString(36).slice(2, 8)}`;
      const sent = await parley('ana', 'send', conversationId.slice(0, 8), line);
      expect(sent.code).toBe(0);
      await chat.waitFor(line);
      const shownAt = Date.now();
      await chat.waitFor(/\(ana's message of \d\d:\d\d:\d\d disappeared\)/, 15_000);
      console.log(`chat marked the line disappeared ${Date.now() - shownAt} ms after showing it`);
      chat.type('/quit\r');
      expect(await chat.exit(10_000)).toBe(0);

      // Ben's history: the change is there, the expired line is not (nor in ana's).
      for (const profile of ['ben', 'ana']) {
        const history = await parley(profile, 'history', conversationId.slice(0, 8));
        expect(history.code, profile).toBe(0);
        expect(history.stdout, profile).not.toContain(line);
        expect(history.stdout, profile).toMatch(
          profile === 'ana'
            ? /you set disappearing messages to 5s/
            : /ana set disappearing messages to 5s/,
        );
      }

      // A chat opened now says so in its banner; `conversations` shows the timer.
      const again = terminal('ben', ['chat', conversationId.slice(0, 8)]);
      await again.waitFor('messages disappear after 5s', 60_000);
      again.type('/quit\r');
      expect(await again.exit(10_000)).toBe(0);
      const listed = await parley('ben', 'conversations');
      expect(listed.stdout).toContain('disappearing 5s');

      // Off: the banner says nothing more, and lines stay.
      const off = await parley('ben', 'timer', conversationId.slice(0, 8), 'off');
      expect([off.code, off.stdout.trim()]).toEqual([
        0,
        `disappearing messages are off in ${conversationId}`,
      ]);
      const kept = await parley('ana', 'send', conversationId.slice(0, 8), 'this one stays');
      expect(kept.code).toBe(0);
      const history = await parley('ana', 'history', conversationId.slice(0, 8));
      expect(history.stdout).toMatch(/ben turned disappearing messages off/);
      expect(history.stdout).toContain('this one stays');
    }, 180_000);
  },
);
