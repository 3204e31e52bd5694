/**
 * Copying a core-crypto store out of and into IndexedDB.
 *
 * core-crypto keeps each database as an encrypted SQLite file (SQLite3MultipleCiphers, keyed by
 * the 32-byte key given to `Database.open`) in the "relaxed-idb" VFS of sqlite-wasm-rs: the file
 * lives in memory and its pages are mirrored into the IndexedDB database `core-crypto`, object
 * store `blocks`, as `{ path, offset, data }` records keyed by `[path, offset]`. The pages are
 * ciphertext; a copy of them plus the key is the whole store. core-crypto offers no export, so
 * the engine copies those records.
 *
 * "Relaxed" means the mirror lags: SQLite's commit only queues the write of the changed pages,
 * and a background task writes them later, one IndexedDB transaction after another — one queue
 * for every file of the WebAssembly instance, so one engine's write may wait behind many of the
 * other engines' writes. See {@link settledBlocks} for how a copy waits for the queue to drain.
 */

/** One page-sized block of a store file. */
export interface StoreBlock {
  offset: number;
  data: Uint8Array;
}

const DATABASE = 'core-crypto';
const STORE = 'blocks';
// The VFS opens its database at version 1 and creates the store on upgrade; doing the same here
// means whichever side opens it first leaves it as the other expects.
const VERSION = 1;
/** How long a copy waits for the writer to be idle before it gives up. */
const SETTLE_TIMEOUT_MS = 60_000;

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => {
      resolve(req.result);
    };
    req.onerror = () => {
      reject(req.error ?? new Error('IndexedDB request failed'));
    };
  });
}

function open(): Promise<IDBDatabase> {
  const req = indexedDB.open(DATABASE, VERSION);
  req.onupgradeneeded = () => {
    req.result.createObjectStore(STORE, { keyPath: ['path', 'offset'] });
  };
  return request(req);
}

function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function isBlockRecord(value: unknown): value is { offset: number; data: Uint8Array } {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as { offset?: unknown; data?: unknown };
  return typeof record.offset === 'number' && record.data instanceof Uint8Array;
}

/** The blocks of one file as IndexedDB holds them now, in offset order. */
export async function readBlocks(path: string): Promise<StoreBlock[]> {
  const database = await open();
  try {
    const transaction = database.transaction(STORE, 'readonly');
    const records = await request(
      transaction.objectStore(STORE).getAll(IDBKeyRange.bound([path, 0], [path, Infinity])),
    );
    return records.filter(isBlockRecord).map((record) => ({
      offset: record.offset,
      data: Uint8Array.from(record.data),
    }));
  } finally {
    database.close();
  }
}

/** Whether two copies of a file are the same. */
export function sameBlocks(a: readonly StoreBlock[], b: readonly StoreBlock[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((block, i) => {
    const other = b[i];
    if (other?.offset !== block.offset || other.data.length !== block.data.length) return false;
    return block.data.every((byte, j) => byte === other.data[j]);
  });
}

// --- the VFS's writes, counted ------------------------------------------------------------------
//
// The VFS (sqlite-wasm-rs "relaxed-idb") queues one sync per committed file on a single channel
// and a single loop works it off: for each entry it opens a readwrite IndexedDB transaction on
// `blocks`, puts the file's changed pages, and awaits the transaction's completion; the next
// entry's transaction is opened in a microtask after that. So at a task boundary the queue is
// empty exactly when no such transaction is open. The VFS offers no flush, and reading one file's
// blocks until they stop changing is not enough: its newest write may sit in the queue behind
// other files' for longer than any fixed wait (seen with seven engines in one process: a save an
// epoch behind, then FUTURE_EPOCH after the restore). Hence the count of open transactions.

let openWrites = 0;
let idleWaiters: (() => void)[] = [];
let counting = false;

function writeEnded(): void {
  openWrites -= 1;
  if (openWrites > 0) return;
  const waiters = idleWaiters;
  idleWaiters = [];
  for (const wake of waiters) wake();
}

/**
 * Counts the readwrite transactions opened on the store's IndexedDB database, by anyone (the VFS
 * of every core-crypto instance, and {@link writeBlocks}). Installed once, on the prototype of
 * the IndexedDB in use, before the first database is opened.
 */
export function countStoreWrites(): void {
  if (counting) return;
  const prototype = (globalThis as { IDBDatabase?: { prototype: IDBDatabase } }).IDBDatabase
    ?.prototype;
  if (prototype === undefined) throw new Error('there is no IndexedDB to keep the store in');
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with apply(this) below
  const open = prototype.transaction;
  const counted = function (
    this: IDBDatabase,
    ...args: Parameters<IDBDatabase['transaction']>
  ): IDBTransaction {
    const transaction = open.apply(this, args);
    if (args[1] === 'readwrite' && this.name === DATABASE) {
      openWrites += 1;
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        writeEnded();
      };
      transaction.addEventListener('complete', end);
      transaction.addEventListener('abort', end);
    }
    return transaction;
  };
  Object.defineProperty(prototype, 'transaction', {
    value: counted,
    configurable: true,
    writable: true,
  });
  counting = true;
}

/** Resolves at a task boundary where no write to the store is open (the writer's queue is empty). */
async function writerIdle(): Promise<void> {
  if (!counting) throw new Error('the store writes are not counted');
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    // Past a task boundary the writer has opened the transaction of its next queued entry.
    await nextTask();
    if (openWrites === 0) return;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('the store writer did not become idle');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/**
 * The blocks of a file once the VFS has written everything SQLite committed to it: read when the
 * writer's queue is empty (see above). Call it only while nothing else uses that database, so
 * that no new commit of the file can be queued meanwhile.
 */
export async function settledBlocks(path: string): Promise<StoreBlock[]> {
  await writerIdle();
  return readBlocks(path);
}

/** Whether IndexedDB holds any block of the file. */
export async function hasBlocks(path: string): Promise<boolean> {
  const database = await open();
  try {
    const transaction = database.transaction(STORE, 'readonly');
    const count = await request(
      transaction.objectStore(STORE).count(IDBKeyRange.bound([path, 0], [path, Infinity])),
    );
    return count > 0;
  } finally {
    database.close();
  }
}

/** Writes a copy of a file into IndexedDB under `path` (which must not exist yet). */
export async function writeBlocks(path: string, blocks: readonly StoreBlock[]): Promise<void> {
  const database = await open();
  try {
    const transaction = database.transaction(STORE, 'readwrite');
    const store = transaction.objectStore(STORE);
    for (const block of blocks) store.put({ path, offset: block.offset, data: block.data });
    await new Promise<void>((resolve, reject) => {
      transaction.oncomplete = () => {
        resolve();
      };
      transaction.onerror = () => {
        reject(transaction.error ?? new Error('IndexedDB transaction failed'));
      };
      transaction.onabort = () => {
        reject(transaction.error ?? new Error('IndexedDB transaction aborted'));
      };
    });
  } finally {
    database.close();
  }
}
