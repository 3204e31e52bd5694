// Builds the browser client (apps/web/dist) for `npm start`, unless the build is newer than
// every source it is made of: a later start costs a directory walk, not a build.
// `--force` builds in any case. Plain JavaScript, since it runs before anything is compiled.
/* global console, process, URL */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const web = join(root, 'apps/web');
const output = join(web, 'dist/index.html');
// What the page is built from: its own files, the libraries it bundles, the installed versions.
const sources = [
  'apps/web/src',
  'apps/web/index.html',
  'apps/web/vite.config.ts',
  'apps/web/package.json',
  'apps/web/build.js',
  'libs/client/src',
  'libs/engine-openmls/src',
  'libs/protocol/src',
  'package-lock.json',
];

/** The newest modification time under a file or folder (specs excluded), 0 if it is absent. */
function newest(path) {
  let info;
  try {
    info = statSync(path);
  } catch {
    return 0;
  }
  if (!info.isDirectory()) return path.endsWith('.spec.ts') ? 0 : info.mtimeMs;
  return readdirSync(path).reduce((latest, name) => Math.max(latest, newest(join(path, name))), 0);
}

const force = process.argv.includes('--force');
const built = newest(output);
const changed = Math.max(...sources.map((source) => newest(join(root, source))));
if (!force && built > changed) process.exit(0);

console.log('Building the web app (apps/web) once; later starts skip this while nothing changed…');
const started = Date.now();
const vite = join(root, 'node_modules/vite/bin/vite.js');
// Warnings are left out: Vite names the Node-only imports of the engine's loader and of an
// HPKE fallback, which never run in a browser. Errors show.
const result = spawnSync(process.execPath, [vite, 'build', '--logLevel', 'error'], {
  cwd: web,
  stdio: 'inherit',
  // React's production build, whatever the caller runs under (vitest sets NODE_ENV=test).
  env: { ...process.env, NODE_ENV: 'production' },
});
if (result.status !== 0) {
  console.error('The web app did not build (apps/web): see above.');
  process.exit(result.status ?? 1);
}
console.log(`Built the web app in ${((Date.now() - started) / 1000).toFixed(1)} s`);
