import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Why `tsc -b apps/server apps/cli` failed in the globalSetup, or null when it built. */
    buildFailure: string | null;
  }
}

const root = fileURLToPath(new URL('../..', import.meta.url));
// One build at a time in this checkout, across vitest processes too (an atomic mkdir).
const lock = `${root}node_modules/.cache/parley-build.lock`;
const STALE_MS = 5 * 60_000;

async function locked<T>(work: () => Promise<T>): Promise<T> {
  mkdirSync(`${root}node_modules/.cache`, { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Held: wait, or take it over from a process that died holding it.
      try {
        if (Date.now() - statSync(lock).mtimeMs > STALE_MS) rmSync(lock, { recursive: true });
      } catch {
        // released meanwhile
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  try {
    return await work();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * Vitest globalSetup of the end-to-end projects: builds the server and the CLI once, before any
 * suite runs, for the suites that run them as real processes (the CLI suite, the fault suite).
 * Vitest sets projects up one after another and a lock serialises other vitest processes, so two
 * `tsc -b` never race on the libraries' dist folders; a later build finds everything up to date.
 * A failed build (a half-edited file) does not stop the other suites: the ones that need the
 * build fail with its message (`inject('buildFailure')`).
 */
export default async function buildOnce(project: TestProject): Promise<void> {
  const started = Date.now();
  let failure: string | null = null;
  try {
    await locked(() =>
      promisify(execFile)('npx', ['tsc', '-b', 'apps/server', 'apps/cli'], { cwd: root }),
    );
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    failure = `tsc -b apps/server apps/cli failed:\n${stdout}${stderr}`;
    console.warn(failure);
  }
  project.provide('buildFailure', failure);
  if (Date.now() - started > 10_000)
    console.log(`built apps/server and apps/cli in ${Date.now() - started} ms`);
}
