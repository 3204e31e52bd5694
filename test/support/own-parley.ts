import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './own-postgres.js';
import {
  freshPostgresDatabase,
  type GraphqlResponse,
  RELAXED_RATE_LIMITS_ENV,
  testDatabase,
} from './test-app.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** The compiled server, as `npm start` runs it (built once by test/support/build-once.ts). */
export const serverMain = `${root}apps/server/dist/main.js`;

/** A transport failure: no GraphQL answer at all (refused, reset, timed out, not JSON). */
export class TransportError extends Error {
  constructor(readonly kind: string) {
    super(kind);
  }
}

/** The kind of a fetch failure, for the figures: `ECONNREFUSED`, `timeout`, … */
function transportKind(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError'))
    return 'timeout';
  const cause =
    error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  return typeof cause?.code === 'string' ? cause.code : 'fetch failed';
}

/**
 * A Parley server running as a child process (`node apps/server/dist/main.js`), so that it can be
 * killed with SIGKILL for real; it keeps its port across restarts.
 */
export class OwnParley {
  private child: ChildProcess | null = null;
  private readonly output: string[] = [];
  /** How long gql waits for an answer before it gives up (a TransportError 'timeout'). */
  requestTimeoutMs = 15_000;
  /** Lines the process logged at level error (an internal error it answered, for instance). */
  readonly errorLines: string[] = [];
  /** Exits that nobody asked for (a crash), with the last lines the process wrote. */
  readonly crashes: string[] = [];

  private constructor(
    readonly name: string,
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  /** Drops what the instance's data lived in (a suite's fresh PostgreSQL database). */
  private dropData: () => Promise<void> = () => Promise.resolve();

  /**
   * One suite's server, with data of its own — a PGlite directory under `home`, or in the
   * postgres project a fresh PostgreSQL database — the settings suites share, and `env` on top.
   * End it with {@link dispose}.
   */
  static async forSuite(
    name: string,
    home: string,
    env: Record<string, string> = {},
  ): Promise<OwnParley> {
    let dataEnv: Record<string, string> = { PARLEY_DATA_DIR: join(home, 'server-data') };
    let dropData = () => Promise.resolve();
    const postgresUrl = process.env.PARLEY_TEST_DATABASE_URL;
    if (testDatabase === 'postgres' && postgresUrl !== undefined) {
      const database = await freshPostgresDatabase(postgresUrl);
      dropData = database.drop;
      dataEnv = { DATABASE_URL: database.url };
    }
    const instance = await OwnParley.start(name, {
      ...dataEnv,
      PARLEY_DOMAIN: 'parley.test',
      PARLEY_TOKEN_SECRET: `the ${name} suite's secret, 32 characters or more`,
      PARLEY_LOG_LEVEL: 'warn',
      PARLEY_METRICS: 'off',
      ...RELAXED_RATE_LIMITS_ENV,
      ...env,
    });
    instance.dropData = dropData;
    return instance;
  }

  /** Stops the instance and drops its data (the end of a suite started by {@link forSuite}). */
  async dispose(): Promise<void> {
    await this.stop();
    await this.dropData();
  }

  /** Starts an instance with `env` added to the environment and waits until /health is 200. */
  static async start(name: string, env: Record<string, string>): Promise<OwnParley> {
    const instance = new OwnParley(name, await freePort(), env);
    await instance.start();
    return instance;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/graphql`;
  }

  /** The last lines the process wrote (stdout and stderr), for a failure's message. */
  tail(lines = 30): string {
    return this.output.slice(-lines).join('\n');
  }

  /** Spawns the process (again) and waits until its /health answers 200. */
  async start(timeoutMs = 60_000): Promise<number> {
    const started = Date.now();
    const child = spawn(process.execPath, [serverMain], {
      env: { ...process.env, ...this.env, PORT: String(this.port), HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const keep = (chunk: Buffer) => {
      const lines = chunk.toString('utf8').split('\n').filter(Boolean);
      this.output.push(...lines);
      this.errorLines.push(...lines.filter((line) => line.includes('"level":"error"')));
      this.output.splice(0, Math.max(0, this.output.length - 200));
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('exit', (code, signal) => {
      if (this.child === child) {
        this.child = null;
        this.crashes.push(`${this.name} exited (${code ?? signal}):\n${this.tail()}`);
      }
    });
    while ((await this.health()).status !== 200) {
      if (this.child !== child) throw new Error(`${this.name} did not start:\n${this.tail()}`);
      if (Date.now() - started > timeoutMs)
        throw new Error(`${this.name} not healthy within ${timeoutMs} ms:\n${this.tail()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return Date.now() - started;
  }

  /** SIGKILL, as a crash or the OOM killer would: no shutdown hooks run. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    this.child = null;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM and wait (the end of the suite). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    this.child = null;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** GET /health: the HTTP status (0 when nothing answered) and the body. */
  async health(): Promise<{ status: number; body: Record<string, unknown> }> {
    try {
      const response = await fetch(`http://127.0.0.1:${this.port}/health`, {
        signal: AbortSignal.timeout(5_000),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    } catch {
      return { status: 0, body: {} };
    }
  }

  /**
   * Posts one GraphQL operation; a response without a GraphQL body (refused, reset, timed out,
   * not JSON) throws a TransportError.
   */
  async gql<T>(
    query: string,
    variables?: Record<string, unknown>,
    token?: string,
    timeoutMs = this.requestTimeoutMs,
  ): Promise<GraphqlResponse<T>> {
    let response: Response;
    try {
      response = await fetch(this.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
        body: JSON.stringify({ query, variables }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      throw new TransportError(transportKind(error));
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw new TransportError(transportKind(error));
    }
    try {
      return JSON.parse(text) as GraphqlResponse<T>;
    } catch {
      throw new TransportError(`HTTP ${response.status}, not JSON`);
    }
  }
}
