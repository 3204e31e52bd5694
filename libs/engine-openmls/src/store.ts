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
 * and a background task writes them later, one IndexedDB transaction after another. See
 * {@link settledBlocks} for how a copy waits for the queue to drain.
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
const SETTLE_ROUNDS = 200;
// Agreeing reads needed, and the pause between reads. One task apart proved too little on a busy
// machine (CI): a queued write could start after the second read. Three reads over ~30 ms that
// all agree are what a save waits for now.
const STABLE_READS = 3;
const SETTLE_PAUSE_MS = 10;

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
  return pause(0);
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
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

/**
 * The blocks of a file once the VFS has written everything SQLite committed to it. Call it only
 * while nothing else uses that database.
 *
 * The VFS writes queued commits strictly one after another, and opens the IndexedDB transaction
 * for the next one in a microtask right after the previous completes. An IndexedDB read opened
 * later than a write on the same store sees that write. So after a task boundary every queued
 * write is either done or already open, a read sees it, and two reads a task apart that agree
 * mean the queue is empty. (The VFS has no flush; core-crypto's own internal one is not exposed.)
 */
export async function settledBlocks(path: string): Promise<StoreBlock[]> {
  await nextTask();
  let previous = await readBlocks(path);
  let agreeing = 1;
  for (let round = 0; round < SETTLE_ROUNDS; round++) {
    await pause(SETTLE_PAUSE_MS);
    const current = await readBlocks(path);
    agreeing = sameBlocks(previous, current) ? agreeing + 1 : 1;
    if (agreeing >= STABLE_READS) return current;
    previous = current;
  }
  throw new Error('the store kept changing while it was being copied');
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
