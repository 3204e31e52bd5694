/**
 * Serves the built browser client (apps/web/dist) at `/`, next to `/graphql`, so that
 * `npm start` alone gives a page to open. The server only hands out files: the page talks to it
 * through the same GraphQL API as every other client and never sends it a plaintext.
 *
 * Hand-written rather than @fastify/static: its versions that satisfy Nest 12's peer range pull
 * content-disposition 3, which declares Node >= 22 (an EBADENGINE warning on Node 20.19), and
 * one folder of content-hashed files needs only what is below.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Where `npm start` builds the page: apps/web/dist, from src/web or dist/web alike. */
export const WEB_APP_DIR = fileURLToPath(new URL('../../../web/dist/', import.meta.url));

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  // instantiateStreaming refuses WebAssembly served under any other type.
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

// The page runs OpenMLS in WebAssembly ('wasm-unsafe-eval') and talks to this origin only
// (GraphQL over HTTP and graphql-ws); nothing else may load or run.
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "connect-src 'self' ws: wss:",
  "img-src 'self' data: blob:",
  "style-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

// Build output names are content hashes (Vite's): a name never changes meaning.
const ASSET_NAME = /^[A-Za-z0-9_.-]+$/;

/** Registers `GET /` (the page) and `GET /assets/:name` (its scripts, styles, WebAssembly). */
export function serveWebApp(fastify: FastifyInstance, directory = WEB_APP_DIR): void {
  fastify.get('/', async (request, reply) => {
    if (await sendFile(request, reply, join(directory, 'index.html'), 'no-cache')) return reply;
    return reply
      .code(404)
      .type('text/plain; charset=utf-8')
      .send(
        'The Parley web app is not built here. `npm start` builds it (apps/web/dist); ' +
          'the GraphQL API is at /graphql.',
      );
  });
  fastify.get<{ Params: { name: string } }>('/assets/:name', async (request, reply) => {
    const { name } = request.params;
    const cache = 'public, max-age=31536000, immutable';
    if (
      ASSET_NAME.test(name) &&
      (await sendFile(request, reply, join(directory, 'assets', name), cache))
    )
      return reply;
    return reply.code(404).type('text/plain; charset=utf-8').send('Not found');
  });
}

/** Sends a file (its .gz twin when the build made one and the browser takes gzip); false if absent. */
async function sendFile(
  request: FastifyRequest,
  reply: FastifyReply,
  path: string,
  cacheControl: string,
): Promise<boolean> {
  const type = CONTENT_TYPES[extname(path)] ?? 'application/octet-stream';
  const gzip = /\bgzip\b/.test(request.headers['accept-encoding'] ?? '');
  const candidates: [string, string | null][] = gzip
    ? [
        [`${path}.gz`, 'gzip'],
        [path, null],
      ]
    : [[path, null]];
  for (const [file, encoding] of candidates) {
    const info = await stat(file).catch(() => null);
    if (info === null || !info.isFile()) continue;
    reply
      .type(type)
      .header('cache-control', cacheControl)
      .header('vary', 'accept-encoding')
      .header('content-length', info.size)
      .header('x-content-type-options', 'nosniff');
    if (encoding !== null) reply.header('content-encoding', encoding);
    if (type.startsWith('text/html')) {
      reply
        .header('content-security-policy', CONTENT_SECURITY_POLICY)
        .header('referrer-policy', 'no-referrer');
    }
    await reply.send(createReadStream(file));
    return true;
  }
  return false;
}
