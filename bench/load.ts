/** The main thread's handle on the load thread (load-worker.ts). */
import { Worker } from 'node:worker_threads';
import type { LoadRequest, LoadResponse, RunResult } from './load-protocol.js';

type Pending = { resolve: (response: LoadResponse) => void; reject: (error: Error) => void };

// Distributive, so that each request type keeps its own fields when `id` is left out.
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** A worker thread running the benchmark's clients; one request at a time is plenty. */
export class LoadThread {
  private readonly worker = new Worker(new URL('./load-worker.js', import.meta.url));
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  constructor() {
    this.worker.on('message', (response: LoadResponse) => {
      const pending = this.pending.get(response.id);
      this.pending.delete(response.id);
      if (response.type === 'error') pending?.reject(new Error(response.message));
      else pending?.resolve(response);
    });
    this.worker.on('error', (error) => {
      for (const pending of this.pending.values()) pending.reject(error);
      this.pending.clear();
    });
    // A thread that ends while a request waits must fail it, not leave the bench hanging.
    this.worker.on('exit', (code) => {
      for (const pending of this.pending.values()) {
        pending.reject(new Error(`the load thread exited (${code}) during a request`));
      }
      this.pending.clear();
    });
  }

  private send(request: WithoutId<LoadRequest>): Promise<LoadResponse> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...request, id });
    });
  }

  /** Sends a request that answers `ok`. */
  async call(request: WithoutId<Exclude<LoadRequest, { type: 'run' }>>): Promise<void> {
    await this.send(request);
  }

  /**
   * Runs a load and returns what the clients measured. Unless told, everything must arrive
   * within PARLEY_BENCH_GRACE_SECONDS (30) of the last send, and an incomplete run's stragglers
   * get PARLEY_BENCH_DRAIN_SECONDS (120) more before the next run may start.
   */
  async run(
    request: Omit<
      Extract<LoadRequest, { type: 'run' }>,
      'id' | 'type' | 'graceSeconds' | 'drainSeconds'
    > &
      Partial<Pick<Extract<LoadRequest, { type: 'run' }>, 'graceSeconds' | 'drainSeconds'>>,
  ): Promise<RunResult> {
    const response = await this.send({
      type: 'run',
      graceSeconds: Number(process.env.PARLEY_BENCH_GRACE_SECONDS ?? '30'),
      drainSeconds: Number(process.env.PARLEY_BENCH_DRAIN_SECONDS ?? '120'),
      ...request,
    });
    if (response.type !== 'result') throw new Error('the load thread answered without a result');
    return response.result;
  }

  /** Closes every client, then the thread. */
  async close(): Promise<void> {
    await this.call({ type: 'close' });
    await this.worker.terminate();
  }
}
