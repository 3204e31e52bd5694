import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStateStore } from './file-state-store.js';
import { StateDecryptionError, keyFromBytes, readSealedStateHeader } from './sealed-state.js';

const FAST = { logN: 10, r: 8, p: 1 };
const encoder = new TextEncoder();

describe('FileStateStore', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'parley-state-'));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('loads nothing before the first save', async () => {
    const store = new FileStateStore(join(directory, 'none.state'), { passphrase: 'p' });
    expect(await store.load()).toBeUndefined();
  });

  it('saves atomically into a 0600 file, leaving no temporary file behind', async () => {
    const path = join(directory, 'deep', 'er', 'device.state');
    const store = new FileStateStore(path, { passphrase: 'pass', scrypt: FAST });
    await store.save(encoder.encode('first'));
    await store.save(encoder.encode('second'));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(directory, 'deep', 'er'))).mode & 0o777).toBe(0o700);
    expect(await readdir(join(directory, 'deep', 'er'))).toEqual(['device.state']);
    const sealed = await readFile(path);
    expect(sealed.includes(Buffer.from('second'))).toBe(false);
    expect(readSealedStateHeader(sealed).derivation).toMatchObject({ kind: 'scrypt', ...FAST });
    expect(await store.load()).toEqual(encoder.encode('second'));
    // Another process with the passphrase alone.
    expect(await new FileStateStore(path, { passphrase: 'pass' }).load()).toEqual(
      encoder.encode('second'),
    );
  });

  it('keeps the order of concurrent saves', async () => {
    const path = join(directory, 'ordered.state');
    const key = await keyFromBytes(crypto.getRandomValues(new Uint8Array(32)));
    const store = new FileStateStore(path, key);
    await Promise.all(['a', 'b', 'c', 'd'].map((s) => store.save(encoder.encode(s))));
    expect(await store.load()).toEqual(encoder.encode('d'));
    await store.clear();
    expect(await store.load()).toBeUndefined();
  });

  it('fails with StateDecryptionError on a wrong passphrase or a changed byte', async () => {
    const path = join(directory, 'tampered.state');
    await new FileStateStore(path, { passphrase: 'right', scrypt: FAST }).save(
      encoder.encode('secret'),
    );
    await expect(new FileStateStore(path, { passphrase: 'wrong' }).load()).rejects.toMatchObject({
      name: 'StateDecryptionError',
      reason: 'AUTHENTICATION_FAILED',
    });
    const sealed = await readFile(path);
    sealed[sealed.length - 20] = (sealed[sealed.length - 20] ?? 0) ^ 0x80;
    await writeFile(path, sealed);
    const error: unknown = await new FileStateStore(path, { passphrase: 'right' }).load().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StateDecryptionError);
    expect((error as StateDecryptionError).reason).toBe('AUTHENTICATION_FAILED');
  });
});
