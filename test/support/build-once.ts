import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Vitest globalSetup of the end-to-end projects: builds the server and the CLI once, before any
 * suite runs, for the suites that run them as real processes (the CLI suite, the fault suite).
 * Vitest sets projects up one after another, so two projects never run `tsc -b` at once and
 * race on the libraries' dist folders; the second build finds everything up to date.
 */
export default async function buildOnce(): Promise<void> {
  const started = Date.now();
  try {
    await promisify(execFile)('npx', ['tsc', '-b', 'apps/server', 'apps/cli'], { cwd: root });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`tsc -b apps/server apps/cli failed:\n${stdout}${stderr}`, { cause: error });
  }
  if (Date.now() - started > 10_000)
    console.log(`built apps/server and apps/cli in ${Date.now() - started} ms`);
}
