#!/usr/bin/env node
// What npm links as `parley` (node_modules/.bin/parley). It is a file in git, executable, so
// that the link is made and works on a fresh clone whatever the build left (tsc writes
// dist/main.js without the executable bit); the CLI itself is the compiled dist/main.js.
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('parley: the CLI is not built yet: run npm run build in the checkout\n');
  process.exit(70);
}
await import(main.href);
