import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A PostgreSQL server of the test's own, in a temporary directory, that it may stop or freeze. */
export interface OwnPostgres {
  /** `postgres://…/postgres` on a loopback port of its own. */
  readonly url: string;
  /** Starts the server again (after stop or kill) on the same port and data. */
  start(): void;
  /** Stops it at once, as a crash would (pg_ctl -m immediate). */
  stop(): void;
  /** SIGKILL to the postmaster. */
  kill(): void;
  /** SIGSTOP / SIGCONT to the postmaster and its backends: the server hangs, sockets stay open. */
  freeze(): void;
  thaw(): void;
  /** Stops it and deletes its directory. */
  destroy(): void;
}

function binDir(): string | null {
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

/** Why this machine cannot run a PostgreSQL of the test's own, or undefined if it can. */
export function ownPostgresSkipReason(): string | undefined {
  const bin = binDir();
  if (bin === null) return 'pg_config is not installed';
  if (!existsSync(join(bin, 'initdb'))) return `no initdb in ${bin}`;
  const root = process.getuid?.() === 0;
  if (root && spawnSync('id', ['postgres']).status !== 0) {
    return 'running as root and there is no postgres user to run initdb as';
  }
  return undefined;
}

/** A free loopback port (the kernel picks one; the server binds it moments later). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        resolve(typeof address === 'object' && address !== null ? address.port : 0);
      });
    });
  });
}

/** initdb into a temporary directory and start the server on a free port. */
export async function startOwnPostgres(): Promise<OwnPostgres> {
  const bin = binDir();
  if (bin === null) throw new Error('pg_config is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'parley-pg-'));
  const data = join(dir, 'data');
  const port = await freePort();
  // PostgreSQL refuses to run as root: run its tools as the postgres user then.
  const asOwner = process.getuid?.() === 0;
  if (asOwner) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    chownSync(dir, uid, gid);
  }
  const run = (tool: string, args: string[]) => {
    const command = asOwner ? 'runuser' : join(bin, tool);
    const argv = asOwner ? ['-u', 'postgres', '--', join(bin, tool), ...args] : args;
    const result = spawnSync(command, argv, { encoding: 'utf8' });
    if (result.status !== 0) {
      throw new Error(`${tool} failed: ${result.stderr || result.stdout}`);
    }
  };
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  const start = () => {
    run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', 'start']);
  };
  const postmaster = () =>
    Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const signalAll = (signal: 'SIGSTOP' | 'SIGCONT') => {
    if (!running) return;
    // The postmaster and every backend: a frozen server answers nothing on open connections.
    const children = spawnSync('pgrep', ['-P', String(postmaster())], { encoding: 'utf8' });
    for (const pid of [postmaster(), ...children.stdout.split('\n').filter(Boolean).map(Number)]) {
      try {
        process.kill(pid, signal);
      } catch {
        // gone meanwhile
      }
    }
  };
  let running = false;
  start();
  running = true;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start() {
      start();
      running = true;
    },
    stop() {
      run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      running = false;
    },
    kill() {
      process.kill(postmaster(), 'SIGKILL');
      running = false;
      // Its backends notice the postmaster is gone and exit; wait so a restart finds the port free.
      const deadline = Date.now() + 10_000;
      while (
        Date.now() < deadline &&
        spawnSync('pgrep', ['-f', `postgres.*${data}`]).status === 0
      ) {
        spawnSync('sleep', ['0.1']);
      }
      rmSync(join(data, 'postmaster.pid'), { force: true });
    },
    freeze() {
      signalAll('SIGSTOP');
    },
    thaw() {
      signalAll('SIGCONT');
    },
    destroy() {
      if (running) {
        try {
          signalAll('SIGCONT');
          run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
        } catch {
          // already down
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
