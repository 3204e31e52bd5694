import { link, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { CliError, EXIT } from './errors.js';

/**
 * One parley process per device state: two processes that each load, change and save the same
 * sealed state would overwrite each other's MLS epochs (a `remove` run beside a `chat` left the
 * chat unable to decrypt anything). The lock is a file next to the state (`<state>.lock`) holding
 * the pid; a lock whose process is gone (killed, crashed) is taken over.
 */
export class ProfileLock {
  private released = false;
  private readonly onExit = () => {
    this.releaseSync();
  };

  private constructor(readonly path: string) {
    // A process that ends without the finally running (process.exit) still lets the lock go.
    process.once('exit', this.onExit);
  }

  /** Takes the lock of the state file at `statePath`, or throws PROFILE_BUSY naming the holder. */
  static async acquire(statePath: string, label: string): Promise<ProfileLock> {
    const path = `${statePath}.lock`;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    for (let attempt = 0; attempt < 5; attempt += 1) {
      try {
        // 'wx': creation is atomic, so of two processes starting at once exactly one wins.
        const handle = await open(path, 'wx', 0o600);
        try {
          await handle.writeFile(`${process.pid}\n`);
        } finally {
          await handle.close();
        }
        return new ProfileLock(path);
      } catch (error) {
        if (!hasCode(error, 'EEXIST')) throw error;
      }
      const holder = await readPid(path);
      if (holder !== null && isAlive(holder)) throw busy(label, holder);
      if (holder === null && attempt === 0) {
        // Created but not written yet by a process starting right now: give it a moment.
        await new Promise((resolve) => setTimeout(resolve, 200));
        continue;
      }
      await takeOver(path, holder);
    }
    throw new CliError(
      'PROFILE_BUSY',
      `The lock of ${label} (${path}) keeps changing hands; try again`,
      EXIT.temporary,
    );
  }

  /** Lets the lock go (only if it is still this process's). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    process.off('exit', this.onExit);
    if ((await readPid(this.path)) === process.pid) await rm(this.path, { force: true });
  }

  private releaseSync(): void {
    if (this.released) return;
    this.released = true;
    try {
      if (Number.parseInt(readFileSync(this.path, 'utf8'), 10) === process.pid)
        rmSync(this.path, { force: true });
    } catch {
      // Already gone: nothing to release.
    }
  }
}

function busy(label: string, pid: number): CliError {
  return new CliError(
    'PROFILE_BUSY',
    `${label} is in use by another parley process (pid ${pid}); one process at a time per profile — end it or wait for it`,
    EXIT.temporary,
  );
}

/**
 * Removes a stale lock. It is renamed aside first and checked: if another process took it over
 * between our read and the rename (the aside file names a live pid), it is put back with link(),
 * which fails rather than overwrite a lock a third process made meanwhile.
 */
async function takeOver(path: string, stalePid: number | null): Promise<void> {
  const aside = `${path}.${process.pid}.${Date.now()}.stale`;
  try {
    await rename(path, aside);
  } catch (error) {
    if (hasCode(error, 'ENOENT')) return; // released meanwhile: try again
    throw error;
  }
  const pid = await readPid(aside);
  if (pid !== stalePid && pid !== null && isAlive(pid)) {
    try {
      await link(aside, path);
    } catch {
      // A third process holds it now; it is theirs either way.
    }
  }
  await rm(aside, { force: true });
}

async function readPid(path: string): Promise<number | null> {
  try {
    const pid = Number.parseInt(await readFile(path, 'utf8'), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else, so it is alive.
    return hasCode(error, 'EPERM');
  }
  // The pid of a parley that died may have been reused by something else: on Linux, a process
  // that is not node holds no parley lock.
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('node');
  } catch {
    return true;
  }
}

function hasCode(error: unknown, code: string): boolean {
  return error instanceof Error && 'code' in error && error.code === code;
}
