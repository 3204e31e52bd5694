import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CliError, EXIT } from './errors.js';
import { ProfileLock } from './lock.js';

describe('ProfileLock', () => {
  let dir: string;
  let state: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parley-lock-'));
    state = join(dir, 'ana.state');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes its pid next to the state, and removes the file on release', async () => {
    const lock = await ProfileLock.acquire(join(dir, 'new', 'ana.state'), 'profile ana');
    expect(await readFile(join(dir, 'new', 'ana.state.lock'), 'utf8')).toBe(`${process.pid}\n`);
    await lock.release();
    await ProfileLock.acquire(state, 'profile ana').then((again) => again.release());
  });

  it('lets the lock go when released', async () => {
    const lock = await ProfileLock.acquire(state, 'profile ana');
    expect(await readFile(`${state}.lock`, 'utf8')).toBe(`${process.pid}\n`);
    await lock.release();
    await expect(readFile(`${state}.lock`, 'utf8')).rejects.toThrow(/ENOENT/);
  });

  it('refuses while a live process holds it, naming the profile and the pid (exit 75)', async () => {
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      await writeFile(`${state}.lock`, `${holder.pid ?? 0}\n`);
      const refused = await ProfileLock.acquire(state, 'profile ana').catch(
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(CliError);
      expect((refused as CliError).exitCode).toBe(EXIT.temporary);
      expect((refused as CliError).code).toBe('PROFILE_BUSY');
      expect((refused as CliError).message).toContain(
        `profile ana is in use by another parley process (pid ${holder.pid ?? 0})`,
      );
      // Nothing changed: the holder's lock is still there.
      expect(await readFile(`${state}.lock`, 'utf8')).toBe(`${holder.pid ?? 0}\n`);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('takes over the lock of a process that died', async () => {
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => dead.once('exit', resolve));
    await writeFile(`${state}.lock`, `${dead.pid ?? 0}\n`);
    const lock = await ProfileLock.acquire(state, 'profile ana');
    expect(await readFile(`${state}.lock`, 'utf8')).toBe(`${process.pid}\n`);
    await lock.release();
  });

  it('does not remove a lock that another process took meanwhile', async () => {
    const lock = await ProfileLock.acquire(state, 'profile ana');
    await writeFile(`${state}.lock`, '1\n');
    await lock.release();
    expect(await readFile(`${state}.lock`, 'utf8')).toBe('1\n');
  });
});
