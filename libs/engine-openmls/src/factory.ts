/**
 * Making OpenMLS engines: fresh ones (a new credential in a new encrypted core-crypto store), and
 * engines continuing from saved state (the store copied back into IndexedDB, or taken over).
 */
import type { MlsEngineFactory } from '@parley/client';
import { SerialQueue, toHex } from '@parley/protocol';
import {
  isNode,
  isolatedRuntime,
  sharedRuntime,
  type CoreCryptoDatabase,
  type CoreCryptoRuntime,
  type LoadOptions,
} from './core-crypto.js';
import { OpenMlsEngine } from './engine.js';
import { fail } from './errors.js';
import { clientIdOf } from './identity.js';
import { DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS, isKeyPackageLifetime } from './key-packages.js';
import { decodeState, type EngineState } from './state.js';
import { hasBlocks, readBlocks, sameBlocks, settledBlocks, writeBlocks } from './store.js';

/** The ciphersuite of every key package and group unless the factory is told otherwise. */
export const DEFAULT_CIPHERSUITE = 1;

/** Ciphersuites core-crypto 10.3.0's WebAssembly build can use (its Ed448 suites 4 and 6 fail). */
export const SUPPORTED_CIPHERSUITES: readonly number[] = Object.freeze([1, 2, 3, 5, 7]);

/** Options of {@link createOpenMlsEngineFactory}. */
export interface OpenMlsEngineOptions extends LoadOptions {
  /**
   * Key-package lifetime, not_after − not_before, in seconds; more than one hour (OpenMLS
   * backdates not_before by an hour). Default {@link DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS}.
   */
  keyPackageLifetimeSeconds?: number;
}

function randomBytes(length: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length));
}

// Opening databases installs the VFS of a runtime, after which files added to IndexedDB are
// invisible to it; opens and the IndexedDB writes before them run one at a time.
const storeLock = new SerialQueue();

function withStoreLock<T>(operation: () => Promise<T>): Promise<T> {
  return storeLock.run(operation);
}

function freshPath(): string {
  return `parley-openmls-${toHex(randomBytes(16))}`;
}

async function openDatabase(
  runtime: CoreCryptoRuntime,
  path: string,
  key: Uint8Array,
): Promise<CoreCryptoDatabase> {
  const { api } = runtime;
  const database = await api.Database.open(path, new api.DatabaseKey(key));
  runtime.vfsInstalled = true;
  return database;
}

/** Makes {@link OpenMlsEngine}s: fresh ones, or from {@link OpenMlsEngine.saveState} output. */
export class OpenMlsEngineFactory implements MlsEngineFactory {
  private readonly keyPackageLifetimeSeconds: number;

  constructor(private readonly options: OpenMlsEngineOptions = {}) {
    const lifetime = options.keyPackageLifetimeSeconds ?? DEFAULT_KEY_PACKAGE_LIFETIME_SECONDS;
    if (!isKeyPackageLifetime(lifetime)) {
      throw new TypeError('keyPackageLifetimeSeconds must be a whole number above 3600');
    }
    this.keyPackageLifetimeSeconds = lifetime;
  }

  /** A new engine (new signature key pair, new encrypted store) for the identity. */
  async create(identity: string, options?: { ciphersuite?: number }): Promise<OpenMlsEngine> {
    const ciphersuite = options?.ciphersuite ?? DEFAULT_CIPHERSUITE;
    if (!SUPPORTED_CIPHERSUITES.includes(ciphersuite)) {
      throw fail('UNSUPPORTED_CIPHERSUITE', `ciphersuite ${ciphersuite} is not supported`);
    }
    const runtime = await sharedRuntime(this.options);
    // Fails early, before a store is made for an identity core-crypto cannot spell.
    clientIdOf(runtime, identity);
    const path = freshPath();
    const key = randomBytes(32);
    return withStoreLock(async () => {
      const database = await openDatabase(runtime, path, key);
      return OpenMlsEngine.start(
        runtime,
        database,
        {
          identity,
          ciphersuite,
          keyPackageLifetimeSeconds: this.keyPackageLifetimeSeconds,
          path,
          key,
          own: new Map(),
          lost: [],
          removed: new Map(),
        },
        true,
      );
    });
  }

  /**
   * An engine continuing from saved state. In a new process (or page) the store is written back
   * into IndexedDB and opened. In the process that made the state, the store may still be open:
   * if it has not changed since the state was saved, the new engine takes it over (the old engine
   * then throws ENGINE_CLOSED); if it has, the saved copy is opened in a second core-crypto
   * instance (Node only; a browser page must reload instead).
   */
  async restore(bytes: Uint8Array): Promise<OpenMlsEngine> {
    let state: EngineState;
    try {
      state = decodeState(bytes);
    } catch (error) {
      throw fail('INVALID_STATE', 'saved engine state does not decode', error);
    }
    const runtime = await sharedRuntime(this.options);
    return withStoreLock(async () => {
      const live = runtime.databases.get(state.path);
      if (live !== undefined) {
        await live.owner?.retire();
        if (sameBlocks(await settledBlocks(state.path), state.blocks)) {
          return OpenMlsEngine.start(runtime, live.database, state, false);
        }
      } else if (!runtime.vfsInstalled) {
        // A browser reload finds the store still in IndexedDB; reuse it if nothing changed.
        if (
          (await hasBlocks(state.path)) &&
          sameBlocks(await readBlocks(state.path), state.blocks)
        ) {
          return OpenMlsEngine.start(
            runtime,
            await openDatabase(runtime, state.path, state.key),
            state,
            false,
          );
        }
        return this.openCopy(runtime, state);
      }
      if (!isNode()) {
        throw fail(
          'INVALID_STATE',
          'this page already uses a newer version of the store; reload the page to restore it',
        );
      }
      return this.openCopy(await isolatedRuntime(this.options), state);
    });
  }

  /** Writes the saved blocks into IndexedDB under a new name and opens them (VFS not loaded yet). */
  private async openCopy(runtime: CoreCryptoRuntime, state: EngineState): Promise<OpenMlsEngine> {
    const path = freshPath();
    await writeBlocks(path, state.blocks);
    const database = await openDatabase(runtime, path, state.key);
    return OpenMlsEngine.start(runtime, database, { ...state, path }, false);
  }
}

/** A factory of OpenMLS engines. */
export function createOpenMlsEngineFactory(options?: OpenMlsEngineOptions): OpenMlsEngineFactory {
  return new OpenMlsEngineFactory(options);
}
