/**
 * Runs asynchronous tasks one at a time, in the order they were queued: each starts only after
 * every task queued before it has settled. A failed task fails only for whoever awaits it; the
 * queue goes on with the next one. A task must not await a later task of its own queue: that
 * task waits for it, so neither would ever end.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;

  /** Queues a task; the promise settles with the task's own result or failure. */
  run<T>(task: () => T | PromiseLike<T>): Promise<T> {
    this.queued++;
    const start = () => task();
    const result = this.tail.then(start, start);
    this.tail = result.then(
      () => this.queued--,
      () => this.queued--,
    );
    return result;
  }

  /** Tasks queued and not yet settled (the running one included). */
  get pending(): number {
    return this.queued;
  }

  /** Resolves once every task queued so far has settled, whatever its outcome (never rejects). */
  async idle(): Promise<void> {
    await this.tail;
  }
}
