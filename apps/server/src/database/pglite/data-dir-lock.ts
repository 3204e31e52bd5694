import { randomBytes } from 'node:crypto';
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** What a lock file says about the process that holds the data dir. */
interface Holder {
  pid: number;
  host?: string;
  startedAt?: string;
}

/** The second server on an embedded data dir: it would hand out the holder's sequence numbers. */
export class DataDirLockedError extends Error {
  constructor(dir: string, holder: Holder) {
    super(
      `The embedded database in ${dir} is in use by process ${holder.pid}` +
        `${holder.startedAt === undefined ? '' : ` (started ${holder.startedAt})`}: ` +
        'stop that server, or set PARLEY_DATA_DIR to another directory (or DATABASE_URL to ' +
        'share PostgreSQL between instances)',
    );
    this.name = 'DataDirLockedError';
  }
}

/** The lock file's name inside the data dir. */
export const LOCK_FILE = 'parley.pid';

const ATTEMPTS = 5;

function parseHolder(text: string): Holder | null {
  try {
    const parsed = JSON.parse(text) as Partial<Holder>;
    return typeof parsed.pid === 'number' && Number.isSafeInteger(parsed.pid)
      ? (parsed as Holder)
      : null;
  } catch {
    return null;
  }
}

/** Whether the holder still runs: signal 0 probes a PID without touching it. */
function isAlive(holder: Holder): boolean {
  // A lock from another machine (a shared volume) cannot be probed: treat it as held.
  if (holder.host !== undefined && holder.host !== hostname()) return true;
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException).code;

/**
 * Takes the data dir for this process: PGlite is one Postgres backend with no lock of its own, so
 * two servers on one directory would both write to it and corrupt each other's data. The lock
 * file holds our PID; one whose process is gone (killed with -9) is taken over. Resolves with the
 * release function.
 */
export async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  const mine = JSON.stringify({
    pid: process.pid,
    host: hostname(),
    startedAt: new Date().toISOString(),
  });
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    try {
      await writeFile(path, mine, { flag: 'wx', mode: 0o600 });
      return async () => {
        // Only our own lock: after a takeover by someone else, theirs stays.
        if ((await readFile(path, 'utf8').catch(() => null)) === mine) await unlink(path);
      };
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
    }
    const text = await readFile(path, 'utf8').catch((error: unknown) => {
      if (errorCode(error) === 'ENOENT') return null; // released meanwhile: try again
      throw error;
    });
    if (text === null) continue;
    const holder = parseHolder(text);
    if (holder !== null && isAlive(holder)) throw new DataDirLockedError(dir, holder);
    // Stale (or unreadable, e.g. a crash mid-write). Move it aside atomically; if what we moved
    // is no longer what we judged stale, a racing server took it over first: put theirs back.
    const aside = `${path}.${randomBytes(6).toString('hex')}`;
    try {
      await rename(path, aside);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      throw error;
    }
    const moved = await readFile(aside, 'utf8');
    if (moved !== text) {
      await link(aside, path).catch(() => undefined);
    }
    await unlink(aside);
  }
  throw new Error(`Could not lock the embedded database in ${dir}: its lock file keeps changing`);
}
