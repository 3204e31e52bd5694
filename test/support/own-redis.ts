import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { freePort } from './own-postgres.js';

/** A Redis server of the test's own on a loopback port, without persistence, that it may stop or freeze. */
export interface OwnRedis {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Starts it again (after kill) on the same port and waits until it answers PING. */
  start(): Promise<void>;
  /** SIGKILL: connections drop at once, everything in it is gone (nothing is persisted). */
  kill(): void;
  /** SIGSTOP / SIGCONT: the server hangs, its sockets stay open. */
  freeze(): void;
  thaw(): void;
  /** Kills it (thawed first, so that the signal is taken). */
  destroy(): void;
}

/** Why this machine cannot run a Redis of the test's own, or undefined if it can. */
export function ownRedisSkipReason(): string | undefined {
  const found = spawnSync('redis-server', ['--version']);
  if (found.error !== undefined || found.status !== 0) return 'redis-server is not installed';
  const cli = spawnSync('redis-cli', ['--version']);
  if (cli.error !== undefined || cli.status !== 0) return 'redis-cli is not installed';
  return undefined;
}

function answers(port: number): boolean {
  const ping = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'ping'], {
    encoding: 'utf8',
    timeout: 2_000,
  });
  return ping.stdout.trim() === 'PONG';
}

/** Starts `redis-server` on a free loopback port and waits until it answers. */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const start = async () => {
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 10_000;
    while (!answers(port)) {
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const signal = (name: NodeJS.Signals) => {
    const running: ChildProcess | null = child;
    if (running === null || running.exitCode !== null || running.signalCode !== null) return;
    running.kill(name);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    start,
    kill() {
      const running: ChildProcess | null = child;
      signal('SIGKILL');
      child = null;
      // Wait for the port to be released, so that a restart binds it again.
      const deadline = Date.now() + 5_000;
      while (running !== null && running.exitCode === null && running.signalCode === null) {
        if (Date.now() > deadline || !answers(port)) break;
        spawnSync('sleep', ['0.05']);
      }
    },
    freeze() {
      signal('SIGSTOP');
    },
    thaw() {
      signal('SIGCONT');
    },
    destroy() {
      signal('SIGCONT');
      signal('SIGKILL');
      child = null;
    },
  };
}
