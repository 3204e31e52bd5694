import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  browserSkipReason,
  FAKE_MEDIA_ARGS,
  launchChromium,
  PageRecorder,
  seriousAxeViolations,
} from './support/browser.js';
import { OwnParley } from './support/own-parley.js';
import { eventually } from './support/sdk-clients.js';
import { e2eSkipReason, testDatabase } from './support/test-app.js';

const root = new URL('..', import.meta.url).pathname;
/** Screenshots of every page after each step (test-results/ is gitignored). */
const shots = join(root, 'test-results/web-calls');
const PASSWORD = 'correct horse battery';
const WAIT_MS = 60_000;
/** The previous epoch's keys stay 5 s (PREVIOUS_EPOCH_GRACE_MS); a little more for the check. */
const AFTER_GRACE_MS = 7_000;

// Heavy (Chromium, four pages running OpenMLS and WebRTC): the e2e:pglite project only, like the
// browser suite. The page does not depend on the server's database.
const skipReason =
  e2eSkipReason ??
  (testDatabase === 'postgres'
    ? 'the browser call suite runs in the e2e:pglite project only'
    : browserSkipReason);
if (skipReason !== undefined && testDatabase !== 'postgres') {
  console.warn(`test/web-calls.e2e-spec.ts skipped: ${skipReason}`);
}

/** What a page's `parleyCall.stats()` returns (apps/web/src/app/call-session.ts). */
interface CallStats {
  callId: string;
  deviceId: string;
  transform: string;
  epoch: string;
  securityCode: string;
  startedAt: number;
  rekeyAt: Record<string, number>;
  pipeline: {
    encrypted: number;
    failed: number;
    passedUndecrypted: number;
    received: Record<
      string,
      { decrypted: number; epoch: string; firstAt: Record<string, number>; failed: number }
    >;
  } | null;
  peers: Record<
    string,
    {
      userId: string;
      connection: string;
      firstFrameAt: number | null;
      framesDecoded: number;
      videoPackets: number;
      audioPackets: number;
      audioSamples: number;
    }
  >;
}

/** Test switches of the page (apps/web/src/app/call-session.ts CallTestSwitches). */
interface Switches {
  withoutKeys?: boolean;
  keepPeers?: boolean;
  insertableStreams?: boolean;
}

/**
 * Encrypted calls in the browser client (issue 13, item 5): real Chromium with fake camera and
 * microphone, four browser users on OpenMLS in WebAssembly, a real child server, WebRTC over
 * loopback host candidates, SFrame on every encoded frame. One story: a 1:1 video call, a third
 * participant added (rekey), removed mid-call (stops decoding, the others go on).
 */
// Generous per step: four pages encoding and decoding video on two shared cores.
describe.skipIf(skipReason !== undefined)(
  'encrypted calls in Chromium',
  { timeout: 300_000 },
  () => {
    let server: OwnParley;
    let home: string;
    let browser: Browser;
    const pages: Record<string, Page> = {};
    const recorders: PageRecorder[] = [];
    /** Every console line of every page (written next to the screenshots after each step). */
    const consoleLines: string[] = [];
    const devices: Record<string, string> = {};
    let ana: Page;
    let ben: Page;
    let cat: Page;

    async function stats(page: Page): Promise<CallStats> {
      const result = await page.evaluate(
        () =>
          (
            globalThis as unknown as { parleyCall: { stats(): Promise<unknown> } }
          ).parleyCall.stats() as Promise<CallStats | null>,
      );
      if (result === null) throw new Error('the page is in no call');
      return result;
    }

    /** Frames `page` decoded from `from`'s page (video), as its receiver's getStats says. */
    async function decodedFrom(page: Page, from: string): Promise<number> {
      return (await stats(page)).peers[devices[from] ?? '']?.framesDecoded ?? 0;
    }

    /** Whether `page` decodes `from`'s video now: its count grows while polled. */
    async function keepsDecoding(page: Page, from: string): Promise<void> {
      const before = await decodedFrom(page, from);
      await eventually(async () => (await decodedFrom(page, from)) > before + 10, WAIT_MS);
    }

    async function signUp(name: string, switches: Switches): Promise<Page> {
      const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
      const page = await context.newPage();
      recorders.push(new PageRecorder(page));
      page.on('console', (message) => {
        consoleLines.push(`${name} ${message.type()}: ${message.text()}`);
      });
      page.on('worker', (worker) => {
        consoleLines.push(`${name} worker started: ${worker.url()}`);
      });
      await page.goto(server.url.replace(/graphql$/, ''));
      // Set before any call opens; the page itself never sets them.
      await page.evaluate((value) => {
        (globalThis as { parleyCallTest?: unknown }).parleyCallTest = value;
      }, switches);
      await page.getByLabel('Username').fill(name);
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.locator('.connection[data-state="online"]').waitFor({ timeout: WAIT_MS });
      pages[name] = page;
      return page;
    }

    const conversationButton = (page: Page, title: string) =>
      page.getByRole('navigation', { name: 'Conversations' }).getByRole('button', { name: title });

    async function addMember(name: string): Promise<void> {
      await ana.getByRole('button', { name: 'Members' }).click();
      await ana.getByLabel('Add people (usernames)').fill(name);
      await ana.getByRole('button', { name: 'Add', exact: true }).click();
      await ana
        .getByRole('region', { name: 'Members' })
        .locator('.member-name', { hasText: name })
        .waitFor({ timeout: WAIT_MS });
      await ana.getByRole('button', { name: 'Members' }).click();
    }

    /** Opens the group on `page` and joins its running call. */
    async function joinFromChat(page: Page): Promise<void> {
      await conversationButton(page, 'Call group').click({ timeout: WAIT_MS });
      await page.getByRole('button', { name: 'Join call' }).click({ timeout: WAIT_MS });
      await page.getByRole('region', { name: 'Call in Call group' }).waitFor({ timeout: WAIT_MS });
    }

    /** Ana's newest epoch (her commit accepted) → first frame `page` decrypted from her under it. */
    async function rekeyMs(page: Page, epochAbove: bigint): Promise<{ epoch: string; ms: number }> {
      let found = { epoch: '', ms: 0 };
      await eventually(async () => {
        const own = await stats(ana);
        if (BigInt(own.epoch) <= epochAbove) return false;
        const postedAt = own.rekeyAt[own.epoch];
        const firstAt = (await stats(page)).pipeline?.received[devices.ana ?? '']?.firstAt[
          own.epoch
        ];
        if (postedAt === undefined || firstAt === undefined) return false;
        found = { epoch: own.epoch, ms: firstAt - postedAt };
        return true;
      }, WAIT_MS);
      return found;
    }

    beforeAll(async () => {
      const buildFailure = inject('buildFailure');
      if (buildFailure !== null) throw new Error(buildFailure);
      await promisify(execFile)(process.execPath, [join(root, 'apps/web/build.js')], { cwd: root });
      await rm(shots, { recursive: true, force: true });
      await mkdir(shots, { recursive: true });
      home = await mkdtemp(join(tmpdir(), 'parley-web-calls-'));
      server = await OwnParley.forSuite('web-calls', home);
      browser = await launchChromium(FAKE_MEDIA_ARGS);
      // Connections to those who left stay open, so that the removed page still gets frames.
      ana = await signUp('ana', { keepPeers: true });
      ben = await signUp('ben', { keepPeers: true });
      // Cat's page takes the fallback: encoded insertable streams on the main thread.
      cat = await signUp('cat', { keepPeers: true, insertableStreams: true });
    }, 300_000);

    let step = 0;
    afterEach(async () => {
      step++;
      const dump: Record<string, unknown> = {};
      for (const [name, page] of Object.entries(pages)) {
        if (!page.isClosed()) {
          await page
            .screenshot({ path: join(shots, `${step}-${name}.png`) })
            .catch(() => undefined);
          dump[name] = await stats(page).catch((error: unknown) => String(error));
        }
      }
      await writeFile(join(shots, `${step}-stats.json`), JSON.stringify(dump, null, 2));
      await writeFile(join(shots, `${step}-console.txt`), consoleLines.join('\n'));
    });

    afterAll(async () => {
      await (browser as Browser | undefined)?.close();
      await (server as OwnParley | undefined)?.dispose();
      if ((home as string | undefined) !== undefined)
        await rm(home, { recursive: true, force: true });
    });

    it('holds a 1:1 video call: each page decodes the other’s video and hears its audio, through SFrame', async () => {
      await ana.getByRole('button', { name: 'New conversation' }).click();
      await ana.getByLabel('Group', { exact: true }).check();
      await ana.getByLabel('Group name').fill('Call group');
      await ana.getByLabel(/Usernames/).fill('ben');
      await ana.getByRole('button', { name: 'Create group' }).click();
      await ana.getByRole('heading', { name: 'Call group' }).waitFor({ timeout: WAIT_MS });
      await conversationButton(ben, 'Call group').waitFor({ timeout: WAIT_MS });

      const startedAt = Date.now();
      await ana.getByRole('button', { name: 'Start video call' }).click();
      await ana.getByRole('region', { name: 'Call in Call group' }).waitFor({ timeout: WAIT_MS });
      const ring = ben.getByRole('region', { name: 'Incoming calls' });
      await ring
        .getByText('ana is starting a video call in Call group')
        .waitFor({ timeout: WAIT_MS });
      const acceptedAt = Date.now();
      await ring.getByRole('button', { name: 'Accept' }).click();
      await ben.getByRole('region', { name: 'Call in Call group' }).waitFor({ timeout: WAIT_MS });
      devices.ana = (await stats(ana)).deviceId;
      devices.ben = (await stats(ben)).deviceId;

      await eventually(
        async () => (await decodedFrom(ana, 'ben')) > 0 && (await decodedFrom(ben, 'ana')) > 0,
        WAIT_MS,
      );
      await keepsDecoding(ana, 'ben');
      await keepsDecoding(ben, 'ana');
      const [anaStats, benStats] = [await stats(ana), await stats(ben)];
      const fromBen = anaStats.peers[devices.ben];
      const fromAna = benStats.peers[devices.ana];
      // Audio arrives too.
      expect(fromBen?.audioPackets).toBeGreaterThan(0);
      expect(fromBen?.audioSamples).toBeGreaterThan(0);
      expect(fromAna?.audioSamples).toBeGreaterThan(0);
      // Every frame went through the SFrame worker: encrypted there, decrypted there.
      expect(anaStats.transform).toBe('script-transform');
      expect(anaStats.pipeline?.encrypted).toBeGreaterThan(0);
      expect(anaStats.pipeline?.received[devices.ben]?.decrypted).toBeGreaterThan(0);
      expect(benStats.pipeline?.received[devices.ana]?.decrypted).toBeGreaterThan(0);
      expect(anaStats.pipeline?.failed).toBe(0);
      // One security code on both screens.
      expect(anaStats.securityCode).toMatch(/^\d{5}( \d{5}){4}$/);
      expect(benStats.securityCode).toBe(anaStats.securityCode);
      await ana.getByText(anaStats.securityCode).waitFor();
      await ben.getByText(anaStats.securityCode).waitFor();
      const anaFirst = fromBen?.firstFrameAt ?? 0;
      const benFirst = fromAna?.firstFrameAt ?? 0;
      console.log(
        `call setup (1:1 video): start → first remote frame decoded at the caller ${anaFirst - startedAt} ms ` +
          `(the callee accepted ${acceptedAt - startedAt} ms after the start); ` +
          `accept → first frame decoded at the callee ${benFirst - acceptedAt} ms`,
      );
      expect(await seriousAxeViolations(ana)).toEqual([]);
      expect(await seriousAxeViolations(ben)).toEqual([]);
    });

    it('adds a third participant mid-call: rekeyed at once, and each page decodes both others', async () => {
      const before = BigInt((await stats(ana)).epoch);
      await addMember('cat');
      const rekey = await rekeyMs(ben, before);
      console.log(
        `rekey (cat added): Ana's commit accepted → Ben decrypts her frames under epoch ${rekey.epoch} in ${rekey.ms} ms`,
      );
      await joinFromChat(cat);
      devices.cat = (await stats(cat)).deviceId;
      for (const [page, others] of [
        [ana, ['ben', 'cat']],
        [ben, ['ana', 'cat']],
        [cat, ['ana', 'ben']],
      ] as const) {
        for (const other of others) await keepsDecoding(page, other);
      }
      const [anaStats, benStats, catStats] = [await stats(ana), await stats(ben), await stats(cat)];
      expect(catStats.transform).toBe('insertable-streams');
      expect(catStats.pipeline?.received[devices.ana ?? '']?.decrypted).toBeGreaterThan(0);
      expect(anaStats.pipeline?.received[devices.cat]?.decrypted).toBeGreaterThan(0);
      expect(benStats.securityCode).toBe(anaStats.securityCode);
      expect(catStats.securityCode).toBe(anaStats.securityCode);
      expect(await seriousAxeViolations(cat)).toEqual([]);
    });

    it('removes a participant mid-call: its decoder gets no frame it can decrypt, the others go on', async () => {
      const before = BigInt((await stats(ana)).epoch);
      await ana.getByRole('button', { name: 'Members' }).click();
      await ana.getByRole('button', { name: 'Remove cat' }).click();
      await eventually(
        async () => (await ana.locator('.member-name', { hasText: 'cat' }).count()) === 0,
        WAIT_MS,
      );
      await ana.getByRole('button', { name: 'Members' }).click();
      const rekey = await rekeyMs(ben, before);
      console.log(
        `rekey (cat removed): Ana's commit accepted → Ben decrypts her frames under epoch ${rekey.epoch} in ${rekey.ms} ms`,
      );
      const removedAt = Date.now();
      // Past the grace time of the old epoch, Cat's decoders stop while packets still come.
      await eventually(() => Date.now() > removedAt + AFTER_GRACE_MS, AFTER_GRACE_MS + 1_000);
      const catBefore = await stats(cat);
      await keepsDecoding(ana, 'ben');
      await keepsDecoding(ben, 'ana');
      const catAfter = await stats(cat);
      for (const other of ['ana', 'ben']) {
        const id = devices[other] ?? '';
        expect(catAfter.peers[id]?.videoPackets).toBeGreaterThan(
          catBefore.peers[id]?.videoPackets ?? 0,
        );
        expect(catAfter.peers[id]?.framesDecoded).toBe(catBefore.peers[id]?.framesDecoded);
      }
      expect(catAfter.pipeline?.failed).toBeGreaterThan(catBefore.pipeline?.failed ?? 0);
      // And the two left share a new security code, which Cat does not have.
      const code = (await stats(ana)).securityCode;
      expect((await stats(ben)).securityCode).toBe(code);
      expect(catAfter.securityCode).not.toBe(code);
    });

    it('ends the call for everyone, and logged no console error', async () => {
      await ana.getByRole('button', { name: 'End call for everyone' }).click();
      await ana.getByText('You ended the call.').waitFor({ timeout: WAIT_MS });
      await ben.getByText('The call ended.').waitFor({ timeout: WAIT_MS });
      for (const page of [ana, ben]) {
        expect(await page.locator('.notice').allTextContents()).toEqual([]);
      }
      expect(recorders.flatMap((recorder) => recorder.errors)).toEqual([]);
    });
  },
);
