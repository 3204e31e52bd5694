import { fileURLToPath } from 'node:url';
import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

const source = (path: string) => fileURLToPath(new URL(path, import.meta.url));
// SWC keeps decorator metadata, which Nest's DI and TypeORM's entities read at runtime.
const plugins = [swc.vite({ module: { type: 'es6' } })];
// Workspace packages resolve to their sources in tests, so no build is needed first.
const resolve = {
  alias: {
    '@parley/protocol': source('./libs/protocol/src/index.ts'),
    '@parley/mls': source('./libs/mls/src/index.ts'),
    '@parley/mls-member': source('./libs/mls-member/src/index.ts'),
    '@parley/client': source('./libs/client/src/index.ts'),
    '@parley/engine-openmls': source('./libs/engine-openmls/src/index.ts'),
    '@parley/sframe': source('./libs/sframe/src/index.ts'),
    '@parley/migrations': source('./migrations/index.ts'),
    // graphql 16 has no "exports": Node loads its CommonJS build (as Nest does), while Vite
    // would pick the ES build, and two copies of graphql cannot share a schema.
    graphql: 'graphql/index.js',
  },
};

/**
 * Three projects: unit specs next to the code, and the end-to-end suites once on embedded
 * PGlite and once on PostgreSQL (the latter skips itself, saying why, when no server is set).
 */
export default defineConfig({
  test: {
    projects: [
      {
        plugins,
        resolve,
        test: {
          name: 'unit',
          include: ['apps/**/*.spec.ts', 'libs/**/*.spec.ts', 'test/support/**/*.spec.ts'],
          testTimeout: 30_000,
          // Setup hooks start PGlite or WebAssembly engines: seconds alone, far more on two busy cores.
          hookTimeout: 60_000,
        },
      },
      {
        plugins,
        resolve,
        test: {
          name: 'e2e:pglite',
          include: ['test/**/*.e2e-spec.ts'],
          // The server and the CLI compiled once, for the suites that spawn them as processes.
          globalSetup: ['test/support/build-once.ts'],
          env: { PARLEY_TEST_DB: 'pglite' },
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        plugins,
        resolve,
        test: {
          name: 'e2e:postgres',
          include: ['test/**/*.e2e-spec.ts'],
          // The server and the CLI compiled once, for the suites that spawn them as processes.
          globalSetup: ['test/support/build-once.ts'],
          env: { PARLEY_TEST_DB: 'postgres' },
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
