import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createOpenMlsEngineFactory, type OpenMlsEngine } from './index.js';
import { decodeState, encodeState } from './state.js';
import { SimulatedGroup, catchUp, codeOf, hex, identity, read, text } from './spec-support.js';

const factory = createOpenMlsEngineFactory();

async function twoInAGroup(name: string) {
  const [alice, bob] = await Promise.all([factory.create(identity()), factory.create(identity())]);
  const groupId = text(name);
  const group = new SimulatedGroup(groupId);
  await alice.createLocalGroup(groupId);
  const [bobsPackage] = await bob.generateKeyPackages(1);
  if (bobsPackage === undefined) throw new Error('no key package');
  await alice.addMembers(groupId, [bobsPackage], group.sender());
  const welcome = group.last().bundle.welcome;
  if (welcome === undefined) throw new Error('no Welcome');
  await bob.joinFromWelcome(welcome);
  await catchUp(alice, group, 0);
  return { alice, bob, groupId, group };
}

async function says(engine: OpenMlsEngine, groupId: Uint8Array, message: Uint8Array) {
  const result = await engine.processMessage(groupId, message);
  if (result.kind !== 'application')
    throw new Error(`expected an application message, got ${result.kind}`);
  return read(result.plaintext);
}

describe('OpenMLS engine state', () => {
  it('round-trips its encoding, and refuses what is not a state', () => {
    const state = {
      identity: identity(),
      ciphersuite: 1,
      keyPackageLifetimeSeconds: 86_400,
      path: 'p',
      key: new Uint8Array(32).fill(7),
      own: new Map([
        ['aa', { kind: 'commit' as const, epoch: 3n }],
        ['bb', { kind: 'application' as const, plaintext: text('hi') }],
      ]),
      lost: ['cc'],
      removed: new Map([['dd', 9n]]),
      blocks: [
        { offset: 0, data: new Uint8Array([1, 2, 3]) },
        { offset: 3, data: new Uint8Array([4]) },
      ],
    };
    const decoded = decodeState(encodeState(state));
    expect(decoded).toEqual(state);
    expect(() => decodeState(text('nonsense'))).toThrow();
    expect(() => decodeState(encodeState(state).subarray(0, 40))).toThrow();
  });

  it('restores mid-conversation in the same process, taking over the unchanged store', async () => {
    const { alice, bob, groupId, group } = await twoInAGroup('same-process');
    expect(await says(bob, groupId, await alice.encrypt(groupId, text('before')))).toBe('before');
    const own = await bob.encrypt(groupId, text('sent before the restart'));
    const signatureKey = await bob.signaturePublicKey();
    const saved = await bob.saveState();

    const restored = await factory.restore(saved);
    expect(restored.identity).toBe(bob.identity);
    expect(hex(await restored.signaturePublicKey())).toBe(hex(signatureKey));
    // The old engine let go of the store.
    expect(await codeOf(() => bob.epoch(groupId))).toBe('ENGINE_CLOSED');
    expect(await restored.epoch(groupId)).toBe(1n);
    expect(await restored.members(groupId)).toEqual([alice.identity, bob.identity]);
    // It still knows its own message when the log echoes it.
    expect(await restored.processMessage(groupId, own)).toMatchObject({
      kind: 'application',
      own: true,
    });
    expect(await says(alice, groupId, own)).toBe('sent before the restart');

    expect(await says(restored, groupId, await alice.encrypt(groupId, text('after')))).toBe(
      'after',
    );
    expect(await says(alice, groupId, await restored.encrypt(groupId, text('back')))).toBe('back');
    const from = group.log.length;
    expect(await restored.update(groupId, group.sender())).toBe('accepted');
    expect(await catchUp(alice, group, from)).toEqual([
      { kind: 'commit', epoch: 2n, own: false, removedSelf: false },
    ]);
    expect(await says(restored, groupId, await alice.encrypt(groupId, text('epoch 2')))).toBe(
      'epoch 2',
    );
  });

  it('restores an older copy in the same process, and replays the log from there', async () => {
    const { alice, bob, groupId, group } = await twoInAGroup('older-copy');
    const saved = await bob.saveState();
    const mark = group.log.length;
    group.post(await alice.encrypt(groupId, text('one')));
    expect(await alice.update(groupId, group.sender())).toBe('accepted');
    group.post(await alice.encrypt(groupId, text('two')));
    // The live engine reads all of it (so its store moves past the copy) …
    expect((await catchUp(bob, group, mark)).map((r) => r.kind)).toEqual([
      'application',
      'commit',
      'application',
    ]);
    // … and the copy, restored while it still runs, starts again from where it was saved.
    const restored = await factory.restore(saved);
    expect(await restored.epoch(groupId)).toBe(1n);
    const replay = await catchUp(restored, group, mark);
    expect(replay.map((r) => (r.kind === 'application' ? read(r.plaintext) : r.kind))).toEqual([
      'one',
      'commit',
      'two',
    ]);
    expect(await restored.epoch(groupId)).toBe(2n);
    expect(await says(alice, groupId, await restored.encrypt(groupId, text('copy here')))).toBe(
      'copy here',
    );
    // The live engine was retired when the copy took over its identity's store.
    expect(await codeOf(() => bob.epoch(groupId))).toBe('ENGINE_CLOSED');
  });

  it('saves its newest store while other engines keep the store writer busy', async () => {
    // Every engine of a process shares one WebAssembly VFS, which writes committed pages to
    // IndexedDB through a single queue. A save that waited only for its own file's blocks to stop
    // changing took an older copy when that queue was long (the own write still waiting behind
    // the others): the restored engine was an epoch behind its cursor and the next log entry was
    // FUTURE_EPOCH. Saves must wait for the queue itself.
    const engines = await Promise.all(Array.from({ length: 7 }, () => factory.create(identity())));
    const [alice, ...others] = engines as [OpenMlsEngine, ...OpenMlsEngine[]];
    const groupId = text(`busy-writer-${hex(crypto.getRandomValues(new Uint8Array(6)))}`);
    const group = new SimulatedGroup(groupId);
    await alice.createLocalGroup(groupId);
    const packages = await Promise.all(others.map(async (engine) => engine.generateKeyPackages(1)));
    expect(await alice.addMembers(groupId, packages.flat(), group.sender())).toBe('accepted');
    const welcome = group.last().bundle.welcome;
    if (welcome === undefined) throw new Error('no Welcome');
    for (const engine of others) await engine.joinFromWelcome(welcome);
    const cursors = new Map<OpenMlsEngine, number>(engines.map((e) => [e, group.log.length]));
    /** Processes the log from the engine's cursor on. */
    const read = async (engine: OpenMlsEngine) => {
      await catchUp(engine, group, cursors.get(engine) ?? 0);
      cursors.set(engine, group.log.length);
    };
    const behind: string[] = [];
    for (let round = 0; round < 24; round++) {
      const committer = engines[round % engines.length] as OpenMlsEngine;
      await read(committer);
      expect(await committer.update(groupId, group.sender())).toBe('accepted');
      cursors.set(committer, group.log.length);
      const saver = engines[1 + (round % others.length)] as OpenMlsEngine;
      // The others catch up and talk, each write queued for the one writer …
      const talk = Promise.allSettled(
        engines
          .filter((engine) => engine !== saver && engine !== committer)
          .map(async (engine) => {
            await read(engine);
            for (let i = 0; i < 3; i++) group.post(await engine.encrypt(groupId, text('busy')));
          }),
      );
      // … while this one catches up too, and saves at once.
      await read(saver);
      const epoch = await saver.epoch(groupId);
      const saved = await saver.saveState();
      for (const outcome of await talk) {
        if (outcome.status === 'rejected') behind.push(`round ${round}: ${String(outcome.reason)}`);
      }
      const restored = await factory.restore(saved);
      engines[engines.indexOf(saver)] = restored;
      cursors.set(restored, cursors.get(saver) ?? 0);
      const at = await restored.epoch(groupId);
      if (at !== epoch) behind.push(`round ${round}: saved at epoch ${epoch}, restored at ${at}`);
      if (behind.length > 0) break;
    }
    expect(behind).toEqual([]);
  }, 240_000);

  it('refuses a state that is not one', async () => {
    expect(await codeOf(() => factory.restore(text('nonsense')))).toBe('INVALID_STATE');
  });

  describe('in a new process', () => {
    let dir = '';

    beforeAll(async () => {
      // The engine's sources as plain JavaScript in a temporary directory whose node_modules is
      // the repository's: a fresh Node process imports them with no TypeScript tooling. The
      // sources of @parley/protocol go along (under protocol/), so that no build is needed.
      dir = await mkdtemp(join(tmpdir(), 'engine-openmls-'));
      const src = fileURLToPath(new URL('.', import.meta.url));
      const protocol = fileURLToPath(new URL('../../protocol/src', import.meta.url));
      const root = fileURLToPath(new URL('../../../node_modules', import.meta.url));
      await symlink(root, join(dir, 'node_modules'), 'dir');
      await mkdir(join(dir, 'protocol'));
      const transpile = async (from: string, to: string) => {
        for (const file of await readdir(from)) {
          if (!file.endsWith('.ts') || file.endsWith('.spec.ts') || file === 'spec-support.ts')
            continue;
          const output = ts.transpileModule(await readFile(join(from, file), 'utf8'), {
            compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
          });
          const code = output.outputText.replaceAll(
            "from '@parley/protocol'",
            "from './protocol/index.js'",
          );
          await writeFile(join(to, file.replace(/\.ts$/, '.js')), code);
        }
      };
      await transpile(src, dir);
      await transpile(protocol, join(dir, 'protocol'));
      await writeFile(join(dir, 'package.json'), '{"type":"module"}');
      await writeFile(join(dir, 'child.js'), CHILD);
    });

    afterAll(async () => {
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    });

    it('continues from saved state: reads what it missed, answers, commits, and saves again', async () => {
      const { alice, bob, groupId, group } = await twoInAGroup('new-process');
      const saved = await bob.saveState();
      const mark = group.log.length;
      group.post(await alice.encrypt(groupId, text('while you were away')));
      expect(await alice.update(groupId, group.sender())).toBe('accepted');
      group.post(await alice.encrypt(groupId, text('new epoch')));

      const output = await runChild(dir, {
        state: Buffer.from(saved).toString('base64'),
        groupId: Buffer.from(groupId).toString('base64'),
        log: group.log.slice(mark).map((m) => Buffer.from(m).toString('base64')),
        reply: 'answered from another process',
      });
      expect(output.seen).toEqual(['while you were away', 'commit 2', 'new epoch']);
      expect(output.members).toEqual([alice.identity, bob.identity]);
      const reply = new Uint8Array(Buffer.from(output.reply, 'base64'));
      expect(await says(alice, groupId, reply)).toBe('answered from another process');
      // The child's commit went through the same (here simulated) delivery service.
      const commit = new Uint8Array(Buffer.from(output.commit, 'base64'));
      expect(await alice.processMessage(groupId, commit)).toEqual({
        kind: 'commit',
        epoch: 3n,
        own: false,
        removedSelf: false,
      });

      // And the state the child saved comes back here (written by another process).
      const back = await factory.restore(new Uint8Array(Buffer.from(output.state, 'base64')));
      expect(await back.epoch(groupId)).toBe(3n);
      expect(await says(back, groupId, await alice.encrypt(groupId, text('welcome back')))).toBe(
        'welcome back',
      );
    });
  });
});

interface ChildOutput {
  seen: string[];
  members: string[];
  reply: string;
  commit: string;
  state: string;
}

function runChild(dir: string, input: unknown): Promise<ChildOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(dir, 'child.js')], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`child exited ${String(code)}: ${stderr}`));
      else resolve(JSON.parse(stdout) as ChildOutput);
    });
    child.stdin.end(JSON.stringify(input));
  });
}

// The child: restore, process the log it missed, reply, commit an update, save.
const CHILD = `
import { createOpenMlsEngineFactory } from './index.js';
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString());
const bytes = (b64) => new Uint8Array(Buffer.from(b64, 'base64'));
const b64 = (u8) => Buffer.from(u8).toString('base64');
const engine = await createOpenMlsEngineFactory().restore(bytes(input.state));
const groupId = bytes(input.groupId);
const seen = [];
for (const entry of input.log) {
  const result = await engine.processMessage(groupId, bytes(entry));
  seen.push(result.kind === 'application' ? new TextDecoder().decode(result.plaintext) : result.kind + ' ' + result.epoch);
}
const reply = await engine.encrypt(groupId, new TextEncoder().encode(input.reply));
let commit;
const outcome = await engine.update(groupId, async (bundle) => { commit = bundle.commit; return 'accepted'; });
if (outcome !== 'accepted') throw new Error('update ' + outcome);
const state = await engine.saveState();
process.stdout.write(JSON.stringify({ seen, members: await engine.members(groupId), reply: b64(reply), commit: b64(commit), state: b64(state) }));
`;
