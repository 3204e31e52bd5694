import type { StateStore } from '../client/client-state.js';
import {
  DEFAULT_SCRYPT_PARAMS,
  decryptState,
  encryptState,
  keyFromPassphrase,
  newSalt,
  readSealedStateHeader,
  type StateKey,
} from './sealed-state.js';

const STORE = 'state';

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

function done(transaction: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
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
}

/**
 * The browser's StateStore: the device's state sealed (AES-256-GCM, like FileStateStore) in one
 * IndexedDB record. A record is replaced in one transaction, so a closed tab leaves the old state
 * or the new one.
 */
export class IndexedDbStateStore implements StateStore {
  private key: StateKey | undefined;

  constructor(
    /** The IndexedDB database name; one per device (profile). */
    readonly databaseName: string,
    private readonly secret: StateKey | { passphrase: string },
    private readonly indexedDb: IDBFactory = globalThis.indexedDB,
  ) {
    if ('cryptoKey' in secret) this.key = secret;
  }

  /** The decrypted state, or undefined before the first save. Throws StateDecryptionError. */
  async load(): Promise<Uint8Array | undefined> {
    const database = await this.open();
    try {
      const sealed = (await request(
        database.transaction(STORE, 'readonly').objectStore(STORE).get(STORE),
      )) as Uint8Array | undefined;
      if (sealed === undefined) return undefined;
      if (!('passphrase' in this.secret)) return await decryptState(sealed, this.secret);
      const { derivation } = readSealedStateHeader(sealed);
      if (derivation.kind !== 'scrypt') return await decryptState(sealed, this.secret.passphrase);
      // Keep the key as the record has it (salt, cost), so saves need no scrypt run.
      const key = await keyFromPassphrase(this.secret.passphrase, derivation.salt, derivation);
      const plain = await decryptState(sealed, key);
      this.key = key;
      return plain;
    } finally {
      database.close();
    }
  }

  /** Seals and stores the state. */
  async save(plain: Uint8Array): Promise<void> {
    const sealed = await encryptState(plain, await this.stateKey());
    const database = await this.open();
    try {
      const transaction = database.transaction(STORE, 'readwrite');
      transaction.objectStore(STORE).put(sealed, STORE);
      await done(transaction);
    } finally {
      database.close();
    }
  }

  private async stateKey(): Promise<StateKey> {
    if (this.key !== undefined) return this.key;
    if (!('passphrase' in this.secret)) throw new Error('unreachable: a key secret sets the key');
    this.key = await keyFromPassphrase(this.secret.passphrase, newSalt(), DEFAULT_SCRYPT_PARAMS);
    return this.key;
  }

  private open(): Promise<IDBDatabase> {
    const opening = this.indexedDb.open(this.databaseName, 1);
    opening.onupgradeneeded = () => {
      opening.result.createObjectStore(STORE);
    };
    return request(opening);
  }
}
