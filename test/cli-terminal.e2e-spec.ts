import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { OwnParley } from './support/own-parley.js';
import { freePort } from './support/own-postgres.js';
import { eventually } from './support/sdk-clients.js';
import { Terminal } from './support/terminal.js';
import { e2eSkipReason, testDatabase } from './support/test-app.js';

const root = new URL('..', import.meta.url).pathname;
// PARLEY_TEST_CLI runs the suite against another build (an older commit's, to watch it fail).
const cli = process.env.PARLEY_TEST_CLI ?? join(root, 'apps/cli/dist/main.js');
// The bar: a command ends within 5 s of its error (or of /quit, Ctrl-D, Ctrl-C).
const ERROR_EXIT_MS = 5_000;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * `parley` as users run it, in processes: through a pseudo-terminal (`script`) where the terminal
 * matters (prompts, chat, Ctrl-C/Ctrl-D), through pipes otherwise. One child server (PGlite in a
 * directory, so that it can be killed and restarted with its data) and one set of users for the
 * whole suite. PGlite project only: the CLI does not depend on the server's database.
 */
describe.skipIf(e2eSkipReason !== undefined || testDatabase === 'postgres')(
  'the parley CLI in a terminal',
  () => {
    let server: OwnParley;
    let home: string;
    let conversationId = '';

    beforeAll(async () => {
      const buildFailure = inject('buildFailure');
      if (buildFailure !== null) throw new Error(buildFailure);
      home = await mkdtemp(join(tmpdir(), 'parley-cli-terminal-'));
      server = await OwnParley.forSuite('cli', home, {
        // Small enough that a typed line can exceed it: a send the server refuses for good.
        PARLEY_LIMIT_MESSAGE_BYTES: '2048',
      });
      for (const name of ['ana', 'ben', 'cat']) {
        expect((await parley(name, 'signup', name)).code).toBe(0);
        expect((await parley(name, 'register', `${name}'s terminal`)).code).toBe(0);
      }
      const created = await parley('ana', 'create', 'ben', 'cat');
      expect(created.code).toBe(0);
      conversationId = /created conversation (\S+)/.exec(created.stdout)?.[1] ?? '';
      expect(conversationId).not.toBe('');
    }, 300_000);
    afterAll(async () => {
      // Unset when beforeAll failed before starting it.
      await (server as OwnParley | undefined)?.dispose();
      await rm(home, { recursive: true, force: true });
    });

    const env = (profile: string, extra: Record<string, string | undefined> = {}) => ({
      ...process.env,
      HOME: home,
      PARLEY_SERVER: server.url,
      PARLEY_PASSPHRASE: `passphrase of ${profile}`,
      PARLEY_PASSWORD: 'correct horse battery',
      ...extra,
    });

    /** One parley run through pipes; one still running after `timeoutMs` is killed and fails. */
    function parley(profile: string, ...args: string[]): Promise<Ran> {
      return parleyWith(env(profile), ['--profile', profile, ...args]);
    }
    function parleyWith(environment: NodeJS.ProcessEnv, args: string[], timeoutMs = 60_000) {
      const started = Date.now();
      const child = spawn(process.execPath, [cli, ...args], { env: environment });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      child.stdin.end();
      return new Promise<Ran>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(
            new Error(
              `parley ${args.join(' ')} still running after ${timeoutMs} ms:\n${stdout}${stderr}`,
            ),
          );
        }, timeoutMs);
        child.once('exit', (code) => {
          clearTimeout(timer);
          resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started });
        });
      });
    }
    // A test that fails half-way leaves no process behind (it would hold its profile's lock).
    const terminals: Terminal[] = [];
    afterEach(() => {
      for (const session of terminals.splice(0)) session.kill();
    });
    const terminal = (
      profile: string,
      args: string[],
      extra: Record<string, string | undefined> = {},
    ) => {
      const session = new Terminal(
        [process.execPath, cli, '--profile', profile, ...args],
        env(profile, extra),
      );
      terminals.push(session);
      return session;
    };

    /**
     * The exit code of a run that fails: its `parley:` line first (starting node and connecting
     * take what they take on a busy machine), then the end within 5 s — the hang was after it.
     */
    async function endsAfterItsError(session: Terminal): Promise<number> {
      await session.waitFor(/parley: /, 60_000);
      return session.exit(ERROR_EXIT_MS);
    }

    it('prints usage, per-command help, the version; names unknown commands (exit 2)', async () => {
      for (const args of [[], ['help'], ['--help']]) {
        const ran = await parleyWith(env('ana'), args);
        expect(ran.code, args.join(' ')).toBe(0);
        expect(ran.stdout).toContain('usage: parley');
        expect(ran.stdout).toContain('75   temporary');
      }
      for (const args of [
        ['help', 'chat'],
        ['chat', '--help'],
        ['--help', 'chat'],
      ]) {
        const ran = await parleyWith(env('ana'), args);
        expect(ran.code, args.join(' ')).toBe(0);
        expect(ran.stdout).toContain('usage: parley [options] chat <conversation>');
        expect(ran.stdout).toContain('examples:');
      }
      const version = await parleyWith(env('ana'), ['--version']);
      expect([version.code, version.stdout.trim(), version.stderr]).toEqual([
        0,
        'parley 0.1.0',
        '',
      ]);
      for (const args of [['bogus'], ['bogus', '--help'], ['help', 'bogus']]) {
        const ran = await parleyWith(env('ana'), args);
        expect(ran.code, args.join(' ')).toBe(2);
        expect(ran.stderr.trim()).toBe(
          'parley: unknown command bogus (parley help lists the commands)',
        );
      }
      const option = await parleyWith(env('ana'), ['--bogus', 'whoami']);
      expect(option.code).toBe(2);
      expect(option.stderr).toMatch(/^parley: Unknown option '--bogus'/);
      const json = await parleyWith(env('ana'), ['--json', 'bogus']);
      expect(json.code).toBe(2);
      const usage = JSON.parse(json.stderr) as { error: Record<string, unknown> };
      expect(usage.error.code).toBe('USAGE');
      expect(usage.error.exitCode).toBe(2);
      expect(usage.error.message).toContain('unknown command bogus');
    });

    it('ends every error path within 5 s with its exit code and one line, no stack', async () => {
      const cases: {
        args: string[];
        code: number;
        line: RegExp;
        profile?: string;
        env?: Record<string, string>;
      }[] = [
        {
          args: ['history', 'zzzz'],
          code: 1,
          line: /No conversation of this device starts with zzzz/,
        },
        {
          args: ['send', 'zzzz', 'hi'],
          code: 1,
          line: /No conversation of this device starts with zzzz/,
        },
        {
          args: ['chat', 'zzzz'],
          code: 1,
          line: /No conversation of this device starts with zzzz/,
        },
        {
          args: ['invite', 'zzzz', 'cat'],
          code: 1,
          line: /No conversation of this device starts with zzzz/,
        },
        { args: ['create', 'nosuchuser'], code: 1, line: /No user named nosuchuser/ },
        {
          args: ['--server', 'not-a-url', 'whoami'],
          code: 2,
          line: /not-a-url is not a server URL/,
        },
        {
          args: ['--server', `http://127.0.0.1:${await freePort()}`, 'conversations'],
          code: 69,
          line: /Cannot reach the server at http:\/\/127\.0\.0\.1:\d+\/graphql/,
        },
        {
          args: ['whoami'],
          code: 1,
          line: /The passphrase does not open profile ana/,
          env: { PARLEY_PASSPHRASE: 'not the passphrase' },
        },
        {
          args: ['send', conversationId.slice(0, 8)],
          code: 2,
          line: /send needs a conversation and text/,
        },
      ];
      const took: string[] = [];
      for (const { args, code, line, env: extra = {} } of cases) {
        const session = terminal('ana', args, extra);
        const exited = await endsAfterItsError(session);
        took.push(
          `${args.filter((arg) => !arg.startsWith('http')).join(' ')} ${(session.endedAt ?? 0) - session.started} ms`,
        );
        const lines = session.text.split('\n').filter((text) => text.trim() !== '');
        expect(exited, `${args.join(' ')}:\n${session.text}`).toBe(code);
        expect(lines, args.join(' ')).toHaveLength(1);
        expect(lines[0]).toMatch(/^parley: /);
        expect(lines[0]).toMatch(line);
      }
      // The figures (process start to exit, on a pseudo-terminal) for the README and reports.
      console.log(`error paths, start to exit: ${took.join('; ')}`);
    });

    it('--server takes the base URL as well as the GraphQL URL', async () => {
      const base = server.url.replace(/\/graphql$/, '');
      for (const url of [base, `${base}/`, server.url]) {
        const ran = await parley('ana', '--server', url, 'conversations');
        expect(ran.code, `${url}: ${ran.stderr}`).toBe(0);
        expect(ran.stdout).toContain(conversationId);
      }
    });

    it('reports errors as one JSON object on stderr with --json', async () => {
      const ran = await parley('ana', '--json', 'history', 'zzzz');
      expect(ran.code).toBe(1);
      expect(ran.stdout).toBe('');
      const error = JSON.parse(ran.stderr) as { error: Record<string, unknown> };
      expect(error.error.code).toBe('NOT_FOUND');
      expect(error.error.exitCode).toBe(1);
      expect(error.error.message).toContain('zzzz');
    });

    it('asks for the password without echoing it, and whoami names the user', async () => {
      const session = terminal('dan', ['signup', 'dan'], { PARLEY_PASSWORD: undefined });
      await session.waitFor('password: ');
      session.type('dan s secret words\r');
      expect(await session.exit(30_000)).toBe(0);
      expect(session.text).toContain('signed up as dan');
      expect(session.output).not.toContain('secret');
      const whoami = await parley('dan', 'whoami');
      expect(whoami.code).toBe(0);
      expect(whoami.stdout).toMatch(/^dan \(user [0-9a-f-]+\), device \(not registered/);
    });

    it('ends at the password prompt on Ctrl-C with 130', async () => {
      const session = terminal('eve', ['signup', 'eve'], { PARLEY_PASSWORD: undefined });
      await session.waitFor('password: ');
      session.type('half typ\x03');
      expect(await session.exit(ERROR_EXIT_MS)).toBe(130);
      expect(session.output).not.toContain('half typ');
    });

    it('create counts the users whose key packages it claims', async () => {
      const ran = await parley('ben', 'create', 'cat');
      expect(ran.code).toBe(0);
      expect(ran.stderr).not.toMatch(/0\/\d+ users/);
      expect(ran.stderr).toContain('claiming key packages of 2 users');
    });

    it('lists and deletes devices', async () => {
      expect((await parleyWith(env('cat2'), ['--profile', 'cat2', 'signin', 'cat'])).code).toBe(0);
      expect((await parleyWith(env('cat2'), ['--profile', 'cat2', 'register', 'spare'])).code).toBe(
        0,
      );
      const listed = await parley('cat', '--json', 'devices');
      const devices = listed.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { deviceId: string; name: string; current: boolean });
      expect(devices.map((device) => [device.name, device.current]).sort()).toEqual([
        ["cat's terminal", true],
        ['spare', false],
      ]);
      const spare = devices.find((device) => device.name === 'spare')?.deviceId ?? '';
      const deleted = await parley('cat', 'devices', 'delete', spare.slice(0, 8));
      expect(deleted.code, deleted.stderr).toBe(0);
      expect(deleted.stdout).toContain(`deleted device ${spare} (spare)`);
      const after = await parley('cat', 'devices');
      expect(after.stdout).not.toContain('spare');
      expect(after.stdout).toContain('(this device)');
    });

    it('ends chat on /quit, Ctrl-D and Ctrl-C at once, after a banner naming the members', async () => {
      for (const [keys, code] of [
        ['/quit\r', 0],
        ['\x04', 0],
        ['\x03', 130],
      ] as const) {
        const session = terminal('ben', ['chat', conversationId.slice(0, 8)]);
        await session.waitFor(
          /chat \S+ with ana, cat \(you are ben\).*\/quit, Ctrl-D or Ctrl-C ends/,
        );
        session.type(keys);
        expect(await session.exit(ERROR_EXIT_MS), JSON.stringify(keys)).toBe(code);
      }
      // Without a terminal, Ctrl-C is a SIGINT to the process: the same end.
      const piped = spawn(process.execPath, [cli, '--profile', 'ben', 'chat', conversationId], {
        env: env('ben'),
      });
      let banner = '';
      piped.stderr.on('data', (chunk: Buffer) => (banner += chunk.toString('utf8')));
      const exited = new Promise<number | null>((resolve) => piped.once('exit', resolve));
      try {
        await eventually(() => banner.includes('Ctrl-C ends'), 30_000);
        const started = Date.now();
        piped.kill('SIGINT');
        expect(await exited).toBe(130);
        expect(Date.now() - started).toBeLessThan(ERROR_EXIT_MS);
      } finally {
        piped.kill('SIGKILL');
      }
    });

    it('shows an own line once, as me:, and refuses a second process on the profile', async () => {
      const session = terminal('ana', ['chat', conversationId.slice(0, 8)]);
      await session.waitFor('Ctrl-C ends');
      session.type('only once please\r');
      await eventually(
        () => session.screen.some((line) => /^\[\d\d:\d\d:\d\d\] me: only once please$/.test(line)),
        30_000,
      );
      expect(session.screen.filter((line) => line.includes('only once please'))).toHaveLength(1);

      // The case: a remove from a second terminal of the profile broke the running chat.
      const second = await parley('ana', 'remove', conversationId, 'cat');
      expect(second.code).toBe(75);
      expect(second.stderr.trim()).toMatch(
        /^parley: profile ana is in use by another parley process \(pid \d+\)/,
      );
      session.type('/quit\r');
      expect(await session.exit(ERROR_EXIT_MS)).toBe(0);
      // Refused before anything: cat is still in, and the lock is free again.
      const after = await parley('ana', 'conversations');
      expect(after.code).toBe(0);
      expect(after.stdout).toMatch(new RegExp(`${conversationId} .*cat`));
    });

    it('takes over a lock left by a process that died (or whose pid is reused)', async () => {
      const dead = spawn(process.execPath, ['-e', '0']);
      const pid = dead.pid ?? 0;
      await new Promise((resolve) => dead.once('exit', resolve));
      await writeFile(join(home, '.parley', 'ana.state.lock'), `${pid}\n`);
      const ran = await parley('ana', 'conversations');
      expect(ran.code, ran.stderr).toBe(0);
      // Its pid reused by a process that is not parley's (not node): stale too.
      const other = spawn('sleep', ['60']);
      try {
        await writeFile(join(home, '.parley', 'ana.state.lock'), `${other.pid ?? 0}\n`);
        const again = await parley('ana', 'conversations');
        expect(again.code, again.stderr).toBe(0);
      } finally {
        other.kill('SIGKILL');
      }
    });

    it('keeps lines typed while the server is down as pending and sends them once it is back, in order, once each', async () => {
      const ana = terminal('ana', ['chat', conversationId.slice(0, 8)]);
      await ana.waitFor('Ctrl-C ends');
      await server.kill();
      await ana.waitFor('parley: offline');
      for (const text of ['while down 1', 'while down 2', 'while down 3']) ana.type(`${text}\r`);
      await eventually(
        () =>
          ana.screen.filter((line) => /^\[pending \] me: while down \d$/.test(line)).length === 3,
        30_000,
      );
      await server.start();
      await ana.waitFor(/back online; caught up \d+ log entr/, 60_000);
      await eventually(
        () =>
          ana.screen.filter((line) => /^\[\d\d:\d\d:\d\d\] me: while down \d$/.test(line))
            .length === 3,
        60_000,
      );
      // Rewritten in place: the screen holds each line once, sent; the raw output had it pending.
      expect(ana.screen.filter((line) => line.includes('while down'))).toHaveLength(3);
      expect(ana.text).toContain('[pending ] me: while down 1');
      expect(ana.text.match(/parley: offline/g), ana.text).toHaveLength(1);
      expect(ana.text.match(/parley: back online/g), ana.text).toHaveLength(1);
      ana.type('\x04');
      expect(await ana.exit(ERROR_EXIT_MS)).toBe(0);

      await eventually(async () => {
        const history = await parley('ben', 'history', conversationId.slice(0, 8));
        const lines = history.stdout.split('\n').filter((line) => line.includes('while down'));
        return lines.length >= 3;
      }, 60_000);
      const history = await parley('ben', 'history', conversationId.slice(0, 8));
      expect(
        history.stdout
          .split('\n')
          .filter((line) => line.includes('while down'))
          .map((line) => line.replace(/^\[[^\]]+\] /, '')),
      ).toEqual(['ana: while down 1', 'ana: while down 2', 'ana: while down 3']);
    });

    it('sends a line left pending by a chat that ended offline the next time the profile connects', async () => {
      const ana = terminal('ana', ['chat', conversationId.slice(0, 8)]);
      await ana.waitFor('Ctrl-C ends');
      await server.kill();
      await ana.waitFor('parley: offline');
      ana.type('left pending\r');
      await eventually(
        () => ana.screen.some((line) => line === '[pending ] me: left pending'),
        30_000,
      );
      ana.type('\x04');
      expect(await ana.exit(ERROR_EXIT_MS)).toBe(0);
      expect(ana.text).toContain('parley: 1 message still pending');
      await server.start();
      const next = await parley('ana', 'conversations');
      expect(next.code, next.stderr).toBe(0);
      // Sent during its connect, or waited for before it closed ("sending 1 pending message…").
      expect(next.stderr).not.toContain('still pending');
      const history = await parley('ben', 'history', conversationId.slice(0, 8));
      expect(history.stdout.match(/ana: left pending$/gm)).toHaveLength(1);
    });

    it('marks a line the server refuses for good as failed, with the reason, and goes on', async () => {
      const ana = terminal('ana', ['chat', conversationId.slice(0, 8)]);
      await ana.waitFor('Ctrl-C ends');
      ana.type(`${'x'.repeat(3000)}\r`);
      await eventually(
        () => ana.screen.some((line) => line.startsWith('[failed  ] me: xxxx')),
        30_000,
      );
      await ana.waitFor(/parley: not sent: "x{40}…" \(.+\)/);
      ana.type('after the failure\r');
      await eventually(
        () => ana.screen.some((line) => /^\[\d\d:\d\d:\d\d\] me: after the failure$/.test(line)),
        30_000,
      );
      ana.type('/quit\r');
      expect(await ana.exit(ERROR_EXIT_MS)).toBe(0);
    });

    it('ends a chat when its device is removed meanwhile, saying so', async () => {
      const created = await parley('ana', 'create', 'cat');
      const id = /created conversation (\S+)/.exec(created.stdout)?.[1] ?? '';
      const session = terminal('cat', ['chat', id.slice(0, 8)]);
      await session.waitFor('Ctrl-C ends');
      expect((await parley('ana', 'remove', id, 'cat')).code).toBe(0);
      await session.waitFor(/was removed from conversation/, 30_000);
      expect(await session.exit(ERROR_EXIT_MS)).toBe(1);
    });

    it('lets a removed member’s commands end cleanly, and its other conversations work', async () => {
      const created = await parley('ana', 'create', 'ben');
      const removedFrom = /created conversation (\S+)/.exec(created.stdout)?.[1] ?? '';
      expect((await parley('ben', 'conversations')).stdout).toContain(removedFrom);
      expect((await parley('ana', 'remove', removedFrom, 'ben')).code).toBe(0);

      const listed = await parley('ben', 'conversations');
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toMatch(new RegExp(`${removedFrom} .*\\(removed\\)`));
      expect(listed.ms).toBeLessThan(30_000);
      const history = await parley('ben', 'history', removedFrom);
      expect(history.code, history.stderr).toBe(0);
      expect(history.stderr).toContain('was removed from this conversation');
      for (const args of [
        ['send', removedFrom, 'hello?'],
        ['chat', removedFrom],
      ]) {
        const session = terminal('ben', args);
        expect(await endsAfterItsError(session), `${args.join(' ')}:\n${session.text}`).toBe(1);
        expect(session.text).toMatch(/removed from conversation/);
      }
      const left = /created conversation (\S+)/.exec(
        (await parley('ana', 'create', 'ben')).stdout,
      )?.[1];
      expect((await parley('ben', 'leave', left ?? '')).stdout).toBe(
        `left conversation ${left ?? ''}\n`,
      );
      expect((await parley('ben', 'conversations')).stdout).toMatch(
        new RegExp(`${left ?? ''} .*\\(left\\)`),
      );
      const chatLeft = terminal('ben', ['chat', left ?? '']);
      expect(await endsAfterItsError(chatLeft)).toBe(1);
      expect(chatLeft.text).toContain(`This device left conversation ${left ?? ''}`);
      const sent = await parley('ben', 'send', conversationId.slice(0, 8), 'still here');
      expect(sent.code, sent.stderr).toBe(0);
      const other = await parley('ben', 'create', 'cat');
      expect(other.code, other.stderr).toBe(0);
    });
  },
);
