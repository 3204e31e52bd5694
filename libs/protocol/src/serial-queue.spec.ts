import { describe, expect, it } from 'vitest';
import { SerialQueue } from './serial-queue.js';

/** A promise and the functions that settle it. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('SerialQueue', () => {
  it('runs tasks one at a time, in the order queued', async () => {
    const queue = new SerialQueue();
    const log: string[] = [];
    const first = deferred();
    const a = queue.run(async () => {
      log.push('a starts');
      await first.promise;
      log.push('a ends');
      return 'a';
    });
    const b = queue.run(() => {
      log.push('b runs');
      return 'b';
    });
    await Promise.resolve();
    expect(log).toEqual(['a starts']);
    expect(queue.pending).toBe(2);
    first.resolve();
    expect(await Promise.all([a, b])).toEqual(['a', 'b']);
    expect(log).toEqual(['a starts', 'a ends', 'b runs']);
  });

  it('goes on after a failed task; the failure reaches only its caller', async () => {
    const queue = new SerialQueue();
    const failing = queue.run(() => Promise.reject(new Error('boom')));
    const throwing = queue.run(() => {
      throw new Error('sync boom');
    });
    const next = queue.run(() => 42);
    await expect(failing).rejects.toThrow('boom');
    await expect(throwing).rejects.toThrow('sync boom');
    await expect(next).resolves.toBe(42);
  });

  it('idle() waits for every task queued so far, and never rejects', async () => {
    const queue = new SerialQueue();
    await queue.idle();
    const gate = deferred();
    let done = false;
    const failing = queue.run(async () => {
      await gate.promise;
      throw new Error('late');
    });
    void queue.run(() => {
      done = true;
    });
    const idle = queue.idle();
    gate.resolve();
    await idle;
    expect(done).toBe(true);
    expect(queue.pending).toBe(0);
    await expect(failing).rejects.toThrow('late');
  });
});
