/**
 * The subscribers of bench/subscribers.ts, in a process of their own (its sockets and its heap
 * are not the server's): opens graphql-ws sockets, one `events` subscription each with a unique
 * id as the SDK does, and reports when each went live (its SubscribedEvent arrived).
 */
import WebSocket from 'ws';
import { EVENTS_SUBSCRIPTION } from './client.js';

/** What the parent sends. */
export type ClientCommand =
  | {
      type: 'open';
      wsUrl: string;
      devices: { token: string; deviceId: string }[];
      count: number;
      /** At most this many connecting at once (the count itself for a burst). */
      concurrency: number;
    }
  | { type: 'close' };

/** What this process answers. */
export type ClientReply =
  | { type: 'opened'; live: number; failed: number; ms: number; liveMs: number[] }
  | { type: 'closed' };

const sockets: WebSocket[] = [];
let nextId = 0;

/** One socket, one subscription; resolves with the ms until its first event, or rejects. */
function subscribe(wsUrl: string, token: string, deviceId: string, start: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl, 'graphql-transport-ws');
    sockets.push(socket);
    const id = `s${(nextId++).toString(36)}-${process.pid.toString(36)}`;
    socket.once('error', reject);
    socket.once('close', (code) => {
      reject(new Error(`closed ${code}`));
    });
    socket.once('open', () => {
      socket.send(
        JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }),
      );
    });
    socket.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString('utf8')) as { type: string };
      if (message.type === 'connection_ack') {
        socket.send(
          JSON.stringify({
            id,
            type: 'subscribe',
            payload: { query: EVENTS_SUBSCRIPTION, variables: { deviceId } },
          }),
        );
      } else if (message.type === 'next') {
        resolve(performance.now() - start);
      } else if (message.type === 'error') {
        reject(new Error(data.toString('utf8')));
      }
    });
  });
}

process.on('message', (command: ClientCommand) => {
  if (command.type === 'close') {
    for (const socket of sockets.splice(0)) socket.terminate();
    process.send?.({ type: 'closed' } satisfies ClientReply);
    return;
  }
  void (async () => {
    const start = performance.now();
    const liveMs: number[] = [];
    let failed = 0;
    let index = 0;
    const worker = async () => {
      while (index < command.count) {
        const i = index++;
        const device = command.devices[i % command.devices.length];
        if (device === undefined) return;
        try {
          liveMs.push(await subscribe(command.wsUrl, device.token, device.deviceId, start));
        } catch {
          failed += 1;
        }
      }
    };
    await Promise.all(Array.from({ length: command.concurrency }, worker));
    process.send?.({
      type: 'opened',
      live: liveMs.length,
      failed,
      ms: performance.now() - start,
      liveMs,
    } satisfies ClientReply);
  })();
});
