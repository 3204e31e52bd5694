/**
 * The OpenMLS engine (core-crypto in WebAssembly), loaded only when a device is made or
 * restored: the sign-in page downloads neither core-crypto's JavaScript nor its 7.3 MB of
 * WebAssembly (2.8 MB gzipped).
 */
import type { MlsEngine, MlsEngineFactory } from '@parley/client';
import wasmUrl from 'parley-core-crypto.wasm?url';

let factory: Promise<MlsEngineFactory> | undefined;

function load(): Promise<MlsEngineFactory> {
  factory ??= import('@parley/engine-openmls').then(({ createOpenMlsEngineFactory }) =>
    createOpenMlsEngineFactory({ wasmUrl: new URL(wasmUrl, location.href) }),
  );
  return factory;
}

/** An MlsEngineFactory that imports @parley/engine-openmls on its first use. */
export const lazyOpenMlsFactory: MlsEngineFactory = {
  async create(identity: string, options?: { ciphersuite?: number }): Promise<MlsEngine> {
    return (await load()).create(identity, options);
  },
  async restore(state: Uint8Array): Promise<MlsEngine> {
    return (await load()).restore(state);
  },
};
