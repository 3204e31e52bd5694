import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { IndexedDbStateStore } from './indexeddb-state-store.js';
import { keyFromBytes, StateDecryptionError } from './sealed-state.js';

// IndexedDB semantics in Node (fake-indexeddb implements the W3C spec); the browser has its own.
describe('IndexedDbStateStore', () => {
  it('keeps the state sealed under a passphrase, across store instances', async () => {
    const indexedDb = new IDBFactory();
    const store = new IndexedDbStateStore('device-1', { passphrase: 'open sesame' }, indexedDb);
    expect(await store.load()).toBeUndefined();
    await store.save(new TextEncoder().encode('state one'));
    await store.save(new TextEncoder().encode('state two'));
    const reopened = new IndexedDbStateStore('device-1', { passphrase: 'open sesame' }, indexedDb);
    expect(new TextDecoder().decode(await reopened.load())).toBe('state two');
    const wrong = new IndexedDbStateStore('device-1', { passphrase: 'wrong' }, indexedDb);
    await expect(wrong.load()).rejects.toBeInstanceOf(StateDecryptionError);
  });

  it('works with a caller-held key, and keeps devices apart', async () => {
    const indexedDb = new IDBFactory();
    const key = await keyFromBytes(crypto.getRandomValues(new Uint8Array(32)));
    const a = new IndexedDbStateStore('a', key, indexedDb);
    const b = new IndexedDbStateStore('b', key, indexedDb);
    await a.save(new Uint8Array([1, 2, 3]));
    expect(await b.load()).toBeUndefined();
    expect([...((await a.load()) ?? [])]).toEqual([1, 2, 3]);
  });
});
