/**
 * Sealed engine state in one file (Node only). The node: modules are imported lazily, on first
 * use, so that exporting this class from the package entry costs a browser bundle nothing.
 */
import type { StateStore } from '../client/client-state.js';
import {
  DEFAULT_SCRYPT_PARAMS,
  decryptState,
  encryptState,
  keyFromPassphrase,
  newSalt,
  readSealedStateHeader,
  type ScryptParams,
  type StateKey,
} from './sealed-state.js';

/** What a {@link FileStateStore} seals with: a ready key, or a passphrase for scrypt. */
export type FileStateSecret = StateKey | { passphrase: string; scrypt?: ScryptParams };

type Fs = typeof import('node:fs/promises');
type Path = typeof import('node:path');

let nodeModules: Promise<{ fs: Fs; path: Path }> | undefined;
function node(): Promise<{ fs: Fs; path: Path }> {
  nodeModules ??= Promise.all([import('node:fs/promises'), import('node:path')]).then(
    ([fs, path]) => ({ fs, path }),
  );
  return nodeModules;
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && 'code' in error && error.code === 'ENOENT';
}

/**
 * Keeps one device's engine state in a file, encrypted with AES-256-GCM. Writes are atomic (a
 * 0600 temporary file in the same directory, flushed, then renamed over the old one), so a
 * crash leaves either the old state or the new one, never half of each.
 */
export class FileStateStore implements StateStore {
  private key: StateKey | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    /** The state file; its directory is created (0700) on first save. */
    readonly path: string,
    private readonly secret: FileStateSecret,
  ) {
    if ('cryptoKey' in secret) this.key = secret;
  }

  /** The decrypted state, or `undefined` when no file exists yet. Throws StateDecryptionError. */
  async load(): Promise<Uint8Array | undefined> {
    return this.serialised(async () => {
      const { fs } = await node();
      let sealed: Uint8Array;
      try {
        sealed = await fs.readFile(this.path);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
      if (!('passphrase' in this.secret)) return decryptState(sealed, this.secret);
      const { derivation } = readSealedStateHeader(sealed);
      // A raw-key file: let decryptState report the mismatch.
      if (derivation.kind !== 'scrypt') return decryptState(sealed, this.secret.passphrase);
      const key = await keyFromPassphrase(this.secret.passphrase, derivation.salt, derivation);
      const plain = await decryptState(sealed, key);
      // Keep the key (salt and cost as the file has them), so that saves need no scrypt run.
      this.key = key;
      return plain;
    });
  }

  /** Encrypts and atomically replaces the state file (mode 0600). */
  async save(plain: Uint8Array): Promise<void> {
    await this.serialised(async () => {
      const { fs, path } = await node();
      const sealed = await encryptState(plain, await this.stateKey());
      const directory = path.dirname(this.path);
      await fs.mkdir(directory, { recursive: true, mode: 0o700 });
      const temporary = path.join(
        directory,
        `.${path.basename(this.path)}.${globalThis.crypto.randomUUID()}.tmp`,
      );
      // 'wx': never follow or reuse something already at the temporary name.
      const handle = await fs.open(temporary, 'wx', 0o600);
      try {
        try {
          // The umask can only narrow the mode, but a chmod makes 0600 explicit either way.
          await handle.chmod(0o600);
          await handle.writeFile(sealed);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fs.rename(temporary, this.path);
      } catch (error) {
        await fs.rm(temporary, { force: true });
        throw error;
      }
      await syncDirectory(fs, directory);
    });
  }

  /** Deletes the state file, if any. */
  async clear(): Promise<void> {
    await this.serialised(async () => {
      const { fs } = await node();
      await fs.rm(this.path, { force: true });
    });
  }

  private async stateKey(): Promise<StateKey> {
    if (this.key !== undefined) return this.key;
    if (!('passphrase' in this.secret)) throw new Error('unreachable: a key secret sets the key');
    this.key = await keyFromPassphrase(
      this.secret.passphrase,
      newSalt(),
      this.secret.scrypt ?? DEFAULT_SCRYPT_PARAMS,
    );
    return this.key;
  }

  // One operation at a time, so two saves never rename out of order.
  private serialised<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.queue.then(operation, operation);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

async function syncDirectory(fs: Fs, directory: string): Promise<void> {
  // Makes the rename itself durable on POSIX file systems; Windows cannot open directories.
  let handle: Awaited<ReturnType<Fs['open']>> | undefined;
  try {
    handle = await fs.open(directory, 'r');
    await handle.sync();
  } catch {
    // Best effort: the data is already flushed and renamed.
  } finally {
    await handle?.close();
  }
}
