/**
 * The key that seals this browser's Parley state (device keys, MLS state, history) in
 * IndexedDB: an AES-256-GCM WebCrypto key made non-extractable, kept in IndexedDB as a
 * CryptoKey object. No script, ours or an injected one, can read its bytes; the page can only
 * ask the browser to encrypt or decrypt with it. Chosen over a passphrase because a passphrase
 * asked at every reload is one people choose badly or write down, and Parley's account password
 * must not double as it (the server checks that password; it must not also open the state).
 * What it does not protect against: someone who copies the browser profile from the disk (the
 * browser keeps the key there), or script running inside this page. See apps/web/README.md.
 */
import type { StateKey } from '@parley/client';

const DATABASE = 'parley-keys';
const STORE = 'keys';

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

function openKeys(): Promise<IDBDatabase> {
  const opening = indexedDB.open(DATABASE, 1);
  opening.onupgradeneeded = () => {
    opening.result.createObjectStore(STORE);
  };
  return request(opening);
}

/** The sealing key of a profile (one per Parley user of this browser), made on first use. */
export async function profileKey(profile: string): Promise<StateKey> {
  const database = await openKeys();
  try {
    const found = (await request(
      database.transaction(STORE, 'readonly').objectStore(STORE).get(profile),
    )) as CryptoKey | undefined;
    if (found !== undefined) return { cryptoKey: found, derivation: { kind: 'raw' } };
    const cryptoKey = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, [
      'encrypt',
      'decrypt',
    ]);
    // add(), not put(): should another tab have made one meanwhile, its key wins and is used.
    try {
      await request(
        database.transaction(STORE, 'readwrite').objectStore(STORE).add(cryptoKey, profile),
      );
    } catch {
      const winner = (await request(
        database.transaction(STORE, 'readonly').objectStore(STORE).get(profile),
      )) as CryptoKey | undefined;
      if (winner === undefined) throw new Error('The browser did not keep the state key');
      return { cryptoKey: winner, derivation: { kind: 'raw' } };
    }
    return { cryptoKey, derivation: { kind: 'raw' } };
  } finally {
    database.close();
  }
}

/** Forgets a profile's key: what it sealed can never be opened again. */
export async function forgetProfileKey(profile: string): Promise<void> {
  const database = await openKeys();
  try {
    await request(database.transaction(STORE, 'readwrite').objectStore(STORE).delete(profile));
  } finally {
    database.close();
  }
}
