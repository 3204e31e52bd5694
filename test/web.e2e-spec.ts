import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  browserSkipReason,
  launchChromium,
  PageRecorder,
  seriousAxeViolations,
} from './support/browser.js';
import { OwnParley } from './support/own-parley.js';
import { eventually } from './support/sdk-clients.js';
import { e2eSkipReason, testDatabase } from './support/test-app.js';

const root = new URL('..', import.meta.url).pathname;
const cli = join(root, 'apps/cli/dist/main.js');
/** Screenshots of each step (test-results/ is gitignored). */
const shots = join(root, 'test-results/web');
const PASSWORD = 'correct horse battery';
const WAIT_MS = 60_000;

// The browser suite is heavy (Chromium, two pages running OpenMLS, a child server): it runs in
// the e2e:pglite project only. The page does not depend on the server's database.
const skipReason =
  e2eSkipReason ??
  (testDatabase === 'postgres'
    ? 'the browser suite runs in the e2e:pglite project only'
    : browserSkipReason);
if (skipReason !== undefined && testDatabase !== 'postgres') {
  console.warn(`test/web.e2e-spec.ts skipped: ${skipReason}`);
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The browser client in real Chromium against a real child server, with real MLS: Ana and Ben
 * in two browser contexts (OpenMLS in WebAssembly, state sealed in IndexedDB), Cat on the
 * `parley` CLI (ts-mls). One story, step by step, each step a screenshot.
 */
describe.skipIf(skipReason !== undefined)('the web app in Chromium', () => {
  let server: OwnParley;
  let home: string;
  let browser: Browser;
  let anaContext: BrowserContext;
  let benContext: BrowserContext;
  let ana: Page;
  let ben: Page;
  const recorders: PageRecorder[] = [];
  /** Everything the test typed as a message or a name: no request may carry it in the clear. */
  const typed: string[] = [];
  let groupId = '';
  let step = 0;
  /** When the server was down (its restart), the one time pages may log failed requests. */
  const outage = { from: 0, to: 0 };

  const shot = async (page: Page, name: string) => {
    await page.screenshot({ path: join(shots, `${String(++step).padStart(2, '0')}-${name}.png`) });
  };

  const open = async (context: BrowserContext): Promise<Page> => {
    const page = await context.newPage();
    recorders.push(new PageRecorder(page));
    return page;
  };

  /** `parley` as Cat, through pipes. */
  function cat(...args: string[]): Promise<Ran> {
    const child = spawn(process.execPath, [cli, '--profile', 'cat', ...args], {
      env: {
        ...process.env,
        HOME: home,
        PARLEY_SERVER: server.url,
        PARLEY_PASSPHRASE: 'passphrase of cat',
        PARLEY_PASSWORD: PASSWORD,
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.stdin.end();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`parley ${args.join(' ')} still running:\n${stdout}${stderr}`));
      }, WAIT_MS);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
    });
  }

  const visible = (page: Page, text: string | RegExp) =>
    page.getByText(text).first().waitFor({ state: 'visible', timeout: WAIT_MS });

  const conversationButton = (page: Page, title: string | RegExp) =>
    page.getByRole('navigation', { name: 'Conversations' }).getByRole('button', { name: title });

  async function signUp(page: Page, username: string): Promise<void> {
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.locator('.connection[data-state="online"]').waitFor({ timeout: WAIT_MS });
  }

  async function send(page: Page, text: string): Promise<void> {
    typed.push(text);
    await page.getByLabel('Message', { exact: true }).fill(text);
    await page.keyboard.press('Enter');
  }

  const messageLine = (page: Page, text: string) =>
    page.getByRole('log').locator('.message', { hasText: text });

  beforeAll(async () => {
    const buildFailure = inject('buildFailure');
    if (buildFailure !== null) throw new Error(buildFailure);
    // What `npm start` does first: build the page unless the build is up to date.
    await promisify(execFile)(process.execPath, [join(root, 'apps/web/build.js')], { cwd: root });
    await rm(shots, { recursive: true, force: true });
    await mkdir(shots, { recursive: true });
    home = await mkdtemp(join(tmpdir(), 'parley-web-'));
    server = await OwnParley.forSuite('web', home, {
      // Small enough that a pasted text exceeds it: a send the server refuses for good.
      PARLEY_LIMIT_MESSAGE_BYTES: '4096',
    });
    browser = await launchChromium();
    anaContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    // Ben is on a phone-sized screen: 360 px wide.
    benContext = await browser.newContext({ viewport: { width: 360, height: 740 } });
  }, 300_000);

  afterAll(async () => {
    await (browser as Browser | undefined)?.close();
    await (server as OwnParley | undefined)?.dispose();
    if ((home as string | undefined) !== undefined)
      await rm(home, { recursive: true, force: true });
  });

  it('serves the page at / and signs up two browser users and a CLI user', async () => {
    const base = server.url.replace(/graphql$/, '');
    ana = await open(anaContext);
    const started = Date.now();
    await ana.goto(base);
    await ana.getByLabel('Username').waitFor();
    const formMs = Date.now() - started;
    const pageBytes = recorders[0]?.responses.reduce((sum, r) => sum + r.bytes, 0) ?? 0;
    expect(await seriousAxeViolations(ana)).toEqual([]);
    await shot(ana, 'sign-in');

    const signUpStarted = Date.now();
    await signUp(ana, 'ana');
    const onlineMs = Date.now() - signUpStarted;
    const allBytes = recorders[0]?.responses.reduce((sum, r) => sum + r.bytes, 0) ?? 0;
    const wasm = recorders[0]?.responses.find((r) => r.url.endsWith('.wasm'));
    console.log(
      `first load: sign-in form in ${formMs} ms, ${(pageBytes / 1024).toFixed(0)} KiB on the wire; ` +
        `sign-up + device registration + online in ${onlineMs} ms, ` +
        `${(allBytes / 1024 / 1024).toFixed(2)} MiB on the wire in all ` +
        `(OpenMLS WebAssembly ${((wasm?.bytes ?? 0) / 1024 / 1024).toFixed(2)} MiB gzip, loaded after sign-in)`,
    );
    // The engine is not part of the sign-in page: it loads after sign-in.
    expect(pageBytes).toBeLessThan(1024 * 1024);
    expect(wasm?.bytes ?? 0).toBeGreaterThan(1024 * 1024);

    // Ben signs up with the keyboard alone: the username field has the focus, Tab moves on.
    ben = await open(benContext);
    await ben.goto(base);
    await ben.getByLabel('Username').waitFor();
    await ben.keyboard.type('ben');
    await ben.keyboard.press('Tab');
    await ben.keyboard.type(PASSWORD);
    await ben.keyboard.press('Tab'); // Sign in
    await ben.keyboard.press('Tab'); // Create account
    await ben.keyboard.press('Enter');
    await ben.locator('.connection[data-state="online"]').waitFor({ timeout: WAIT_MS });
    expect((await cat('signup', 'cat')).code).toBe(0);
    expect((await cat('register', "cat's terminal")).code).toBe(0);
    await shot(ana, 'signed-in');
  });

  it('creates a named group, invites by the members panel, and talks in all directions', async () => {
    await ana.getByRole('button', { name: 'New conversation' }).click();
    await ana.getByLabel('Group', { exact: true }).check();
    typed.push('Lisbon trip');
    await ana.getByLabel('Group name').fill('Lisbon trip');
    await ana.getByLabel(/Usernames/).fill('ben');
    await ana.getByRole('button', { name: 'Create group' }).click();
    await ana.getByRole('heading', { name: 'Lisbon trip' }).waitFor({ timeout: WAIT_MS });

    // An admin invites Cat from the members panel.
    await ana.getByRole('button', { name: 'Members' }).click();
    await ana.getByLabel('Add people (usernames)').fill('cat');
    await ana.getByRole('button', { name: 'Add', exact: true }).click();
    await ana
      .getByRole('region', { name: 'Members' })
      .locator('.member-name', { hasText: 'cat' })
      .waitFor({ timeout: WAIT_MS });
    await shot(ana, 'group-created');
    await ana.getByRole('button', { name: 'Members' }).click();

    await send(ana, 'Hello from Ana in the browser');
    await messageLine(ana, 'Hello from Ana in the browser')
      .locator('text=Sent')
      .waitFor({ timeout: WAIT_MS });

    // Ben's list: the group by its (encrypted) name, one unread, the preview.
    const item = conversationButton(ben, /Lisbon trip/);
    await item.waitFor({ timeout: WAIT_MS });
    await eventually(async () => (await item.locator('.unread').textContent()) === '1', WAIT_MS);
    expect(await item.textContent()).toContain('ana: Hello from Ana in the browser');
    await shot(ben, 'ben-list-unread');
    await item.click();
    await messageLine(ben, 'Hello from Ana in the browser').waitFor({ timeout: WAIT_MS });

    // Cat, on the CLI, finds the group and answers.
    const listed = await cat('conversations');
    expect(listed.code, listed.stderr).toBe(0);
    groupId = /^(\S+)\s+Lisbon trip/m.exec(listed.stdout)?.[1] ?? '';
    expect(groupId, listed.stdout).not.toBe('');
    typed.push('Cat here, from a terminal');
    expect((await cat('send', groupId, 'Cat here, from a terminal')).code).toBe(0);
    await messageLine(ana, 'Cat here, from a terminal').waitFor({ timeout: WAIT_MS });
    await messageLine(ben, 'Cat here, from a terminal').waitFor({ timeout: WAIT_MS });
    expect(await messageLine(ana, 'Cat here, from a terminal').textContent()).toContain('cat');

    await send(ben, 'Ben answers from a phone');
    await messageLine(ana, 'Ben answers from a phone').waitFor({ timeout: WAIT_MS });
    const history = await cat('history', groupId);
    expect(history.stdout).toMatch(/ana: Hello from Ana in the browser/);
    expect(history.stdout).toMatch(/ben: Ben answers from a phone/);
    await shot(ana, 'group-chat');
    await shot(ben, 'group-chat-360px');
    expect(await seriousAxeViolations(ana)).toEqual([]);
    expect(await seriousAxeViolations(ben)).toEqual([]);
  });

  it('shows typing and read receipts', async () => {
    // Ben types without sending: Ana sees it.
    await ben.getByLabel('Message', { exact: true }).pressSequentially('typing a reply');
    await visible(ana, 'ben is typing…');
    await shot(ana, 'typing');
    await ben.getByLabel('Message', { exact: true }).fill('');
    // Ana's newest line, read by Ben (his chat is open) and by nobody else live.
    await send(ana, 'Did you read this?');
    await messageLine(ben, 'Did you read this?').waitFor({ timeout: WAIT_MS });
    await visible(ana, /Read by ben/);
    await shot(ana, 'read-receipt');
  });

  it('shows a message the server refused as failed, with Retry and Discard', async () => {
    const tooLong = `A pasted text ${'that goes on and on '.repeat(300)}`;
    await send(ana, tooLong);
    const line = ana.locator('.message[data-state="failed"]');
    await line.getByText(/Not sent/).waitFor({ timeout: WAIT_MS });
    await shot(ana, 'failed');
    await line.getByRole('button', { name: 'Retry' }).click();
    await line.getByText(/Not sent/).waitFor({ timeout: WAIT_MS });
    await line.getByRole('button', { name: 'Discard' }).click();
    await line.waitFor({ state: 'detached', timeout: WAIT_MS });
    // The conversation goes on.
    await send(ana, 'A shorter one');
    await messageLine(ben, 'A shorter one').waitFor({ timeout: WAIT_MS });
  });

  it('starts a direct conversation between Ana and Ben', async () => {
    await ana.getByRole('button', { name: 'New conversation' }).click();
    await ana.getByLabel('Username', { exact: true }).fill('ben');
    await ana.getByRole('button', { name: 'Start direct message' }).click();
    await ana.getByRole('heading', { name: 'ben' }).waitFor({ timeout: WAIT_MS });
    await send(ana, 'Just between us');
    // Ben's phone shows the list again, with the DM named after Ana.
    await ben.getByRole('button', { name: 'Conversations' }).click();
    const dm = conversationButton(ben, /^ana/);
    await dm.waitFor({ timeout: WAIT_MS });
    await eventually(
      async () => (await dm.textContent())?.includes('Just between us') === true,
      WAIT_MS,
    );
    await dm.click();
    await messageLine(ben, 'Just between us').waitFor({ timeout: WAIT_MS });
    await send(ben, 'Sure, only us two');
    await messageLine(ana, 'Sure, only us two').waitFor({ timeout: WAIT_MS });
    await shot(ben, 'direct-360px');
  });

  it('renames the group: every member sees the new name', async () => {
    await conversationButton(ana, /Lisbon trip/).click();
    await ana.getByRole('button', { name: 'Rename' }).click();
    typed.push('Porto trip');
    await ana.getByLabel('Group name').fill('Porto trip');
    await ana.getByRole('button', { name: 'Save name' }).click();
    await ana.getByRole('heading', { name: 'Porto trip' }).waitFor({ timeout: WAIT_MS });
    await ben.getByRole('button', { name: 'Conversations' }).click();
    await conversationButton(ben, /Porto trip/).waitFor({ timeout: WAIT_MS });
    await eventually(async () => /Porto trip/.test((await cat('conversations')).stdout), WAIT_MS);
    await shot(ben, 'renamed');
  });

  it('keeps the device and its history across a reload', async () => {
    await ben.reload();
    await ben.locator('.connection[data-state="online"]').waitFor({ timeout: WAIT_MS });
    await conversationButton(ben, /Porto trip/).click();
    await messageLine(ben, 'Hello from Ana in the browser').waitFor({ timeout: WAIT_MS });
    await messageLine(ben, 'Ben answers from a phone').waitFor({ timeout: WAIT_MS });
    await shot(ben, 'after-reload');
    // Still one device: the reload did not register another.
    await ben.getByRole('button', { name: 'Devices' }).click();
    await ben.getByText('(this browser)').waitFor({ timeout: WAIT_MS });
    expect(await ben.locator('.devices li').count()).toBe(1);
    await ben.getByRole('button', { name: 'Conversations' }).click();
  });

  it('lets one tab own the device: a second tab is told, and may take over', async () => {
    const second = await open(anaContext);
    await second.goto(server.url.replace(/graphql$/, ''));
    await visible(second, 'Parley is open in another tab');
    await shot(second, 'second-tab');
    await second.getByRole('button', { name: 'Use Parley in this tab' }).click();
    await visible(ana, 'Parley moved to another tab');
    await second.locator('.connection[data-state="online"]').waitFor({ timeout: WAIT_MS });
    await conversationButton(second, /Porto trip/).click();
    await messageLine(second, 'Did you read this?').waitFor({ timeout: WAIT_MS });
    await shot(ana, 'first-tab-moved');
    await ana.close();
    ana = second;
  });

  it('survives a server restart: offline shown, a message typed meanwhile goes once it is back', async () => {
    await conversationButton(ben, /Porto trip/).click();
    await server.kill();
    const downAt = Date.now();
    await ana.locator('.connection[data-state="offline"]').waitFor({ timeout: WAIT_MS });
    await ben.locator('.connection[data-state="offline"]').waitFor({ timeout: WAIT_MS });
    await send(ana, 'Typed while the server was down');
    await messageLine(ana, 'Typed while the server was down')
      .getByText('Sending…')
      .waitFor({ timeout: WAIT_MS });
    await shot(ana, 'offline');
    await server.start();
    await ana.locator('.connection[data-state="online"]').waitFor({ timeout: WAIT_MS });
    await ben.locator('.connection[data-state="online"]').waitFor({ timeout: WAIT_MS });
    await messageLine(ben, 'Typed while the server was down').waitFor({ timeout: WAIT_MS });
    expect(await messageLine(ben, 'Typed while the server was down').count()).toBe(1);
    const upAt = Date.now();
    await shot(ben, 'after-restart');
    // Failed requests while the server was down are the only console errors Chromium logs.
    outage.from = downAt - 1_000;
    outage.to = upAt + 5_000;
  });

  it('changes roles and removes a member: Cat is out, the others go on', async () => {
    await ana.getByRole('button', { name: 'Members' }).click();
    // Ana makes Ben an admin: his header says so.
    await ana.getByRole('button', { name: 'Make admin ben' }).click();
    await ana.getByRole('button', { name: 'Make member ben' }).waitFor({ timeout: WAIT_MS });
    await visible(ben, 'you are admin');
    expect(await seriousAxeViolations(ana)).toEqual([]);
    await ana.getByRole('button', { name: 'Remove cat' }).click();
    await eventually(
      async () => (await ana.locator('.member-name', { hasText: 'cat' }).count()) === 0,
      WAIT_MS,
    );
    await shot(ana, 'cat-removed');
    await eventually(async () => /removed/.test((await cat('conversations')).stdout), WAIT_MS);
    const refused = await cat('send', groupId, 'Am I still here?');
    expect(refused.code).toBe(1);
    await send(ben, 'Just the two of us now');
    await messageLine(ana, 'Just the two of us now').waitFor({ timeout: WAIT_MS });
  });

  it('a 5 s timer makes messages vanish in both pages', async () => {
    await ana.getByLabel('Disappearing').selectOption('5');
    await visible(ana, 'Disappearing messages: 5 s');
    await visible(ben, 'Disappearing messages: 5 s');
    await visible(ben, 'ana set messages to disappear after 5 s');
    await send(ana, 'This line disappears in 5 s');
    const sentAt = Date.now();
    await messageLine(ben, 'This line disappears in 5 s').waitFor({ timeout: WAIT_MS });
    await shot(ben, 'timer-before');
    for (const page of [ana, ben]) {
      await messageLine(page, 'This line disappears in 5 s').waitFor({
        state: 'detached',
        timeout: 30_000,
      });
    }
    const goneMs = Date.now() - sentAt;
    console.log(`a 5 s message left both pages ${goneMs} ms after it was sent`);
    expect(goneMs).toBeGreaterThan(4_000);
    expect(goneMs).toBeLessThan(15_000);
    // What came before the timer stays.
    await messageLine(ana, 'Just the two of us now').waitFor({ timeout: WAIT_MS });
    await shot(ben, 'timer-after');
    await ana.getByLabel('Disappearing').selectOption('0');
    await visible(ben, 'ana turned disappearing messages off');
  });

  it('lists devices and deletes one; signs out everywhere and back in with the same device', async () => {
    // Ben signs in on a second browser: a second device, which joins his conversations.
    const laptopContext = await browser.newContext({ viewport: { width: 1024, height: 768 } });
    const laptop = await open(laptopContext);
    await laptop.goto(server.url.replace(/graphql$/, ''));
    await laptop.getByLabel('Username').fill('ben');
    await laptop.getByLabel('Password').fill(PASSWORD);
    await laptop.getByRole('button', { name: 'Sign in' }).click();
    await laptop.locator('.connection[data-state="online"]').waitFor({ timeout: WAIT_MS });
    await ben.getByRole('button', { name: 'Devices' }).click();
    const other = ben.locator('.devices li', { hasNotText: 'this browser' });
    await other.waitFor({ timeout: WAIT_MS });
    expect(await ben.locator('.devices li').count()).toBe(2);
    await shot(ben, 'devices');
    expect(await seriousAxeViolations(ben)).toEqual([]);
    await other.getByRole('button', { name: /^Delete/ }).click();
    // The deleted device's page says so, and forgets what it held.
    await visible(laptop, /device was deleted/).catch(async (error: unknown) => {
      throw new Error(`laptop shows: ${await laptop.locator('body').innerText()}`, {
        cause: error,
      });
    });
    await shot(laptop, 'device-deleted');
    await eventually(async () => (await ben.locator('.devices li').count()) === 1, WAIT_MS);
    await laptopContext.close();
    await ben.getByRole('button', { name: 'Conversations' }).click();
    await conversationButton(ben, /Porto trip/).click();

    await ana.getByRole('button', { name: 'Sign out everywhere' }).click();
    await visible(ana, 'Signed out on every device.');
    await ana.getByLabel('Password').fill(PASSWORD);
    await ana.getByRole('button', { name: 'Sign in' }).click();
    await ana.locator('.connection[data-state="online"]').waitFor({ timeout: WAIT_MS });
    // The same device: its history is still there, and it still talks.
    await conversationButton(ana, /Porto trip/).click();
    await messageLine(ana, 'Just the two of us now').waitFor({ timeout: WAIT_MS });
    await send(ana, 'Back after signing out everywhere');
    await messageLine(ben, 'Back after signing out everywhere').waitFor({ timeout: WAIT_MS });
  });

  it('logged no console error and showed no error notice in normal use', async () => {
    for (const page of [ana, ben])
      expect(await page.locator('.notice').allTextContents()).toEqual([]);
    // Failed requests while the server was down are the only console errors Chromium logs.
    const unexpected = recorders.flatMap((recorder) =>
      recorder.errors.filter((error) => error.at < outage.from || error.at > outage.to),
    );
    expect(unexpected).toEqual([]);
  });

  it('never sent a typed plaintext to the server', () => {
    const sent = recorders.flatMap((recorder) => recorder.sent);
    expect(sent.length).toBeGreaterThan(50);
    for (const text of typed) {
      const found = recorders.flatMap((recorder) => recorder.containing(text));
      expect(found, `“${text}” left a page in the clear`).toEqual([]);
    }
  });
});
