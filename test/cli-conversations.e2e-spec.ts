import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { OwnParley } from './support/own-parley.js';
import { e2eSkipReason, testDatabase } from './support/test-app.js';

const root = new URL('..', import.meta.url).pathname;
// PARLEY_TEST_CLI runs the suite against another build (an older commit's, to watch it fail).
const cli = process.env.PARLEY_TEST_CLI ?? join(root, 'apps/cli/dist/main.js');

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The CLI of direct conversations, named groups and roles, as users run it (processes, a child
 * server): `parley dm`, `create --name`, `rename`, `role`, `conversations` (name or DM peer,
 * kind, members, unread count), the chat banner, and a new device that joins its user's
 * conversations on `register` (external commits), then is deleted with `devices delete`.
 */
describe.skipIf(e2eSkipReason !== undefined || testDatabase === 'postgres')(
  'the parley CLI: DMs, named groups, roles',
  () => {
    let server: OwnParley;
    let home: string;

    beforeAll(async () => {
      const buildFailure = inject('buildFailure');
      if (buildFailure !== null) throw new Error(buildFailure);
      home = await mkdtemp(join(tmpdir(), 'parley-cli-conversations-'));
      server = await OwnParley.forSuite('cli-conversations', home);
      for (const name of ['ana', 'ben', 'cat']) {
        expect((await parley(name, 'signup', name)).code).toBe(0);
        expect((await parley(name, 'register', `${name}'s laptop`)).code).toBe(0);
      }
    }, 300_000);
    afterAll(async () => {
      await (server as OwnParley | undefined)?.dispose();
      await rm(home, { recursive: true, force: true });
    });

    /** One parley run through pipes, `input` on its stdin; killed (and failed) after 60 s. */
    function run(profile: string, input: string, args: string[]): Promise<Ran> {
      const child = spawn(process.execPath, [cli, '--profile', profile, ...args], {
        env: {
          ...process.env,
          HOME: home,
          PARLEY_SERVER: server.url,
          PARLEY_PASSPHRASE: `passphrase of ${profile}`,
          PARLEY_PASSWORD: 'correct horse battery',
        },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      child.stdin.end(input);
      return new Promise<Ran>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(
            new Error(`parley ${args.join(' ')} still running after 60 s:\n${stdout}${stderr}`),
          );
        }, 60_000);
        child.once('exit', (code) => {
          clearTimeout(timer);
          resolve({ code: code ?? -1, stdout, stderr });
        });
      });
    }
    const parley = (profile: string, ...args: string[]) => run(profile, '', args);
    const lines = (ran: Ran) => ran.stdout.split('\n').filter((line) => line.trim() !== '');

    let dmId = '';
    let groupId = '';

    it('parley dm opens or creates the one DM of a pair, and chats in it', async () => {
      const first = await run('ana', 'hello ben\n/quit\n', ['dm', 'ben']);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).toMatch(/direct conversation (\S+) with ben/);
      dmId = /direct conversation (\S+) with ben/.exec(first.stderr)?.[1] ?? '';
      expect(first.stderr).toContain('direct chat with ben (you are ana)');

      // Ben's list: the DM under ana's name, its kind, one unread message.
      const listed = await parley('ben', 'conversations');
      expect(listed.code, listed.stderr).toBe(0);
      const dmLine = lines(listed).find((line) => line.startsWith(dmId));
      expect(dmLine).toMatch(/ ana {2}\[dm\] {2}ana, ben {2}1 unread$/);

      // Ben's `dm ana` is the same conversation; what the chat showed is read.
      const answer = await run('ben', 'hi ana\n/quit\n', ['dm', 'ana']);
      expect(answer.code, answer.stderr).toBe(0);
      expect(answer.stderr).toContain('direct chat with ana');
      expect(answer.stderr).not.toContain('direct conversation');
      expect(answer.stdout).toMatch(/ana: hello ben/);
      const after = await parley('ben', 'conversations');
      expect(lines(after).filter((line) => line.includes('[dm]'))).toHaveLength(1);
      expect(lines(after).find((line) => line.startsWith(dmId))).not.toContain('unread');
      const history = await parley('ana', 'history', dmId.slice(0, 8));
      expect(history.stdout).toMatch(/ben: hi ana/);

      // A DM with oneself: one readable line, exit 1.
      const self = await run('ana', '', ['dm', 'ana']);
      expect(self.code).toBe(1);
      expect(self.stderr.trim().split('\n')).toHaveLength(1);
    });

    it('create --name, rename, and the chat banner with the name', async () => {
      const created = await parley('ana', 'create', '--name', 'Trip to Lyon', 'ben', 'cat');
      expect(created.code, created.stderr).toBe(0);
      expect(created.stdout).toMatch(/created conversation \S+ "Trip to Lyon" with 3 devices/);
      groupId = /created conversation (\S+)/.exec(created.stdout)?.[1] ?? '';
      const catList = await parley('cat', 'conversations');
      expect(lines(catList).find((line) => line.startsWith(groupId))).toMatch(
        /Trip to Lyon {2}\[group\] {2}(ana|ben|cat), (ana|ben|cat), (ana|ben|cat)/,
      );

      const renamed = await parley('ben', 'rename', groupId.slice(0, 8), 'Lyon 2027');
      expect(renamed.code, renamed.stderr).toBe(0);
      expect(renamed.stdout).toContain(`renamed ${groupId} to Lyon 2027`);
      const anaList = await parley('ana', 'conversations');
      expect(lines(anaList).find((line) => line.startsWith(groupId))).toContain('Lyon 2027');
      const banner = await run('cat', '/quit\n', ['chat', groupId.slice(0, 8)]);
      expect(banner.code, banner.stderr).toBe(0);
      expect(banner.stderr).toMatch(/chat "Lyon 2027" with (ana, ben|ben, ana) \(you are cat\)/);

      // --name goes with create only.
      const misplaced = await parley('ana', '--name', 'x', 'conversations');
      expect(misplaced.code).toBe(2);
    });

    it('role: admins set roles; a member cannot; the last admin cannot step down', async () => {
      const prefix = groupId.slice(0, 8);
      const refused = await parley('ben', 'role', prefix, 'cat', 'admin');
      expect(refused.code).toBe(1);
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      expect(refused.stderr).toContain('only an admin of the conversation may do that');
      const bad = await parley('ana', 'role', prefix, 'ben', 'boss');
      expect(bad.code).toBe(2);

      const promoted = await parley('ana', 'role', prefix, 'ben', 'admin');
      expect(promoted.code, promoted.stderr).toBe(0);
      expect(promoted.stdout).toContain('ben is now an admin');
      const stepDown = await parley('ana', 'role', prefix, 'ana', 'member');
      expect(stepDown.code, stepDown.stderr).toBe(0);
      const last = await parley('ben', 'role', prefix, 'ben', 'member');
      expect(last.code).toBe(1);
      expect(last.stderr).toContain('make someone else an admin first');
      const json = await parley('ben', '--json', 'conversations');
      const group = json.stdout
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as { conversationId: string; role: string })
        .find((entry) => entry.conversationId === groupId);
      expect(group?.role).toBe('ADMIN');
      // In a DM there are no roles to set.
      const inDm = await parley('ana', 'role', dmId.slice(0, 8), 'ben', 'member');
      expect(inDm.code).toBe(1);
    });

    it("a new device of ana's joins her DM and group on register; devices lists and deletes it", async () => {
      expect((await parley('ana2', 'signin', 'ana')).code).toBe(0);
      const registered = await parley('ana2', 'register', "ana's phone");
      expect(registered.code, registered.stderr).toBe(0);
      expect(registered.stdout).toMatch(/joined 2 of your conversations/);
      // A device that joined by external commit cannot read what came before it: one member that
      // was in sends the name again once it sees the join (here, as each one's next run catches up).
      for (const member of ['ana', 'ben', 'cat'])
        expect((await parley(member, 'conversations')).code).toBe(0);
      const listed = await parley('ana2', 'conversations');
      expect(lines(listed).find((line) => line.startsWith(dmId))).toMatch(/ ben {2}\[dm\]/);
      expect(lines(listed).find((line) => line.startsWith(groupId))).toContain('Lyon 2027');
      const sent = await parley('ana2', 'send', dmId.slice(0, 8), 'from my phone');
      expect(sent.code, sent.stderr).toBe(0);
      const benHistory = await parley('ben', 'history', dmId.slice(0, 8));
      expect(benHistory.stdout).toMatch(/ana: from my phone/);

      const devices = await parley('ana', 'devices');
      expect(lines(devices)).toHaveLength(2);
      const phone = lines(devices).find((line) => line.includes("ana's phone"));
      const phoneId = phone?.split(' ')[0] ?? '';
      const deleted = await parley('ana', 'devices', 'delete', phoneId.slice(0, 8));
      expect(deleted.code, deleted.stderr).toBe(0);
      expect(lines(await parley('ana', 'devices'))).toHaveLength(1);
    });
  },
);
