import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Browser, Page } from 'playwright-core';

/** Debian's Chromium (`apt-get install -y chromium`; .ci/run installs it when it can). */
export const CHROMIUM = process.env.PARLEY_TEST_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser suites cannot run here, or undefined when they can. */
export const browserSkipReason: string | undefined = existsSync(CHROMIUM)
  ? undefined
  : `no Chromium at ${CHROMIUM} (apt-get install -y chromium): the browser suites skip`;

/**
 * Chromium's fake camera and microphone (a test pattern and a beep), granted without a prompt,
 * and media that plays without a click: for the call suite.
 */
export const FAKE_MEDIA_ARGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

/**
 * Headless Chromium as this machine runs it: no sandbox (root), no GPU, and none of Chromium's
 * own network traffic (updates, sync, safe browsing), which a closed network refuses noisily.
 * `extraArgs` are added (e.g. {@link FAKE_MEDIA_ARGS}).
 */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...extraArgs,
    ],
  });
}

/** What one page sent and logged: every request body and WebSocket frame, console errors. */
export class PageRecorder {
  /** Request bodies (POST data) and WebSocket frames the page sent, as text. */
  readonly sent: { url: string; body: string }[] = [];
  /** Console errors and uncaught exceptions, with when they happened (ms since the epoch). */
  readonly errors: { at: number; text: string }[] = [];
  /** Every response: URL, HTTP status, bytes on the wire (Content-Length) and encoding. */
  readonly responses: { url: string; status: number; bytes: number }[] = [];

  constructor(page: Page) {
    page.on('request', (request) => {
      const body = request.postData();
      if (body !== null) this.sent.push({ url: request.url(), body });
    });
    page.on('websocket', (socket) => {
      socket.on('framesent', ({ payload }) => {
        this.sent.push({
          url: socket.url(),
          body: typeof payload === 'string' ? payload : payload.toString('latin1'),
        });
      });
    });
    page.on('console', (message) => {
      if (message.type() === 'error') this.errors.push({ at: Date.now(), text: message.text() });
    });
    page.on('pageerror', (error) => {
      this.errors.push({ at: Date.now(), text: `uncaught: ${error.message}` });
    });
    page.on('response', (response) => {
      const length = Number(response.headers()['content-length'] ?? 0);
      this.responses.push({ url: response.url(), status: response.status(), bytes: length });
    });
  }

  /** The bodies and frames that contain `text` (as typed, or in base64). */
  containing(text: string): { url: string; body: string }[] {
    const base64 = Buffer.from(text, 'utf8').toString('base64');
    return this.sent.filter(({ body }) => body.includes(text) || body.includes(base64));
  }
}

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/**
 * The serious and critical accessibility violations axe-core finds on the page as it is now.
 * axe is evaluated through the DevTools protocol, which the page's Content-Security-Policy does
 * not govern (a <script> tag would be refused, as it should be).
 */
export async function seriousAxeViolations(page: Page): Promise<string[]> {
  const source = readFileSync(
    createRequire(import.meta.url).resolve('axe-core/axe.min.js'),
    'utf8',
  );
  await page.evaluate(source);
  const violations = await page.evaluate(async () => {
    const axe = (
      globalThis as unknown as {
        axe: { run: (context: unknown, options: unknown) => Promise<{ violations: unknown[] }> };
      }
    ).axe;
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations as AxeViolation[];
  });
  return violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map(
      (violation) =>
        `${violation.impact ?? ''} ${violation.id}: ${violation.help} (${violation.nodes
          .map((node) => node.target.join(' '))
          .join('; ')})`,
    );
}
