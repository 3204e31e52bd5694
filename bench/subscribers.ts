/**
 * Subscribers (issue 14, item 5): the server's heap per idle live subscriber at 10,000 of them,
 * and how long 1,000 subscribers connecting at once take until every one is live. The
 * subscribers run in a child process (bench/subscribers-client.ts), so that neither their
 * sockets nor their heap count as the server's; the server's heap is read after a full GC.
 */
import { fork } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadConfig } from '../apps/server/src/config/config.js';
import { BenchDevice } from './client.js';
import { mapLimit } from './group.js';
import { freshDatabase, startParley } from './server.js';
import { quantile } from './stats.js';
import type { ClientCommand, ClientReply } from './subscribers-client.js';

/** What the section measured. */
export interface SubscribersReport {
  idle: number;
  idleLive: number;
  idleFailed: number;
  /** Server heap (after GC) per live idle subscriber, KiB. */
  heapPerSubscriberKiB: number;
  /** Server RSS per live idle subscriber, KiB (sockets' kernel buffers not included). */
  rssPerSubscriberKiB: number;
  burst: number;
  burstLive: number;
  burstFailed: number;
  /** From the first connect until the last SubscribedEvent, ms. */
  burstAllLiveMs: number;
  burstP50Ms: number;
  burstP99Ms: number;
}

/** Options of {@link subscribers}. */
export interface SubscribersOptions {
  idle: number;
  burst: number;
  /** Devices the subscriptions are spread over (each in a conversation of its own). */
  devices: number;
}

function fullGc(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  return () => {
    gc();
    gc();
  };
}

/** A client process and a way to ask it something. */
function clientProcess() {
  const child = fork(new URL('./subscribers-client.js', import.meta.url), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ask = (command: ClientCommand) =>
    new Promise<ClientReply>((resolve) => {
      child.once('message', (reply: ClientReply) => {
        resolve(reply);
      });
      child.send(command);
    });
  return { child, ask };
}

/** Runs the section on a fresh database at `adminUrl`. */
export async function subscribers(
  adminUrl: string,
  options: SubscribersOptions,
  log: (line: string) => void,
): Promise<SubscribersReport> {
  const gc = fullGc();
  const database = await freshDatabase(adminUrl);
  const defaults = loadConfig({});
  const server = await startParley(database.url, {
    limits: { ...defaults.limits, devicesPerUser: 10_000, subscriptionsPerDevice: 1_000_000 },
    http: { ...defaults.http, maxConnections: 1_000_000 },
  });
  const wsUrl = server.url.replace(/^http/, 'ws');
  try {
    const first = await BenchDevice.signUp(server.url);
    const others = await mapLimit(Array.from({ length: options.devices - 1 }), 4, () =>
      first.another(),
    );
    const devices = [first, ...others];
    await mapLimit(devices, 4, (device) => device.createConversation());
    const targets = devices.map((device) => ({ token: device.token, deviceId: device.deviceId }));
    log(`  ${devices.length} devices, each in a conversation of its own`);

    const idleClient = clientProcess();
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const rssBefore = process.memoryUsage().rss;
    const idle = await idleClient.ask({
      type: 'open',
      wsUrl,
      devices: targets,
      count: options.idle,
      concurrency: 200,
    });
    if (idle.type !== 'opened') throw new Error('client did not open');
    // Let the last subscriptions settle (their first frames flushed) before measuring.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    gc();
    const heapAfter = process.memoryUsage().heapUsed;
    const rssAfter = process.memoryUsage().rss;
    const live = Math.max(idle.live, 1);
    log(
      `  ${idle.live} idle subscribers live (${idle.failed} failed) in ${(idle.ms / 1000).toFixed(1)} s; ` +
        `server heap +${((heapAfter - heapBefore) / 2 ** 20).toFixed(1)} MiB`,
    );
    await idleClient.ask({ type: 'close' });
    idleClient.child.kill();
    await new Promise((resolve) => setTimeout(resolve, 2000));

    const burstClient = clientProcess();
    const burst = await burstClient.ask({
      type: 'open',
      wsUrl,
      devices: targets,
      count: options.burst,
      concurrency: options.burst,
    });
    if (burst.type !== 'opened') throw new Error('client did not open');
    await burstClient.ask({ type: 'close' });
    burstClient.child.kill();
    const sorted = Float64Array.from(burst.liveMs).sort();
    return {
      idle: options.idle,
      idleLive: idle.live,
      idleFailed: idle.failed,
      heapPerSubscriberKiB: (heapAfter - heapBefore) / live / 1024,
      rssPerSubscriberKiB: (rssAfter - rssBefore) / live / 1024,
      burst: options.burst,
      burstLive: burst.live,
      burstFailed: burst.failed,
      burstAllLiveMs: sorted.length === 0 ? NaN : (sorted[sorted.length - 1] ?? NaN),
      burstP50Ms: quantile(sorted, 0.5),
      burstP99Ms: quantile(sorted, 0.99),
    };
  } finally {
    await server.close();
    await database.drop();
  }
}
