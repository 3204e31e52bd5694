/**
 * One Parley instance in a process of its own, for (e): scaleout.ts forks one per instance so
 * that each has its own thread and the machine's cores can run them side by side. Reads its
 * settings from argv[2] (JSON), answers `ready` with its URLs, closes on `close`.
 */
import { startParley } from './server.js';

/** What scaleout.ts passes to each instance. */
export interface InstanceSettings {
  databaseUrl: string;
  redisUrl: string | null;
  /** The same on every instance, so that a token from one is good on the others. */
  tokenSecret: string;
}

/** Messages an instance sends to its parent. */
export type InstanceMessage =
  | { type: 'ready'; url: string; wsUrl: string }
  | { type: 'events'; published: number }
  | { type: 'closed' };

const send = (message: InstanceMessage) => {
  process.send?.(message);
};

const settings = JSON.parse(process.argv[2] ?? '{}') as InstanceSettings;
const parley = await startParley(
  settings.databaseUrl,
  { redisUrl: settings.redisUrl },
  settings.tokenSecret,
);
let closing: Promise<void> | undefined;
const shutdown = () => (closing ??= parley.close());
process.on('message', (message: { type: string }) => {
  if (message.type === 'events') send({ type: 'events', published: parley.events.published });
  if (message.type === 'close') {
    void shutdown().finally(() => {
      send({ type: 'closed' });
      process.exit(0);
    });
  }
});
// The parent's end (even a crash) ends the instance.
process.on('disconnect', () => {
  void shutdown().finally(() => process.exit(0));
});
send({ type: 'ready', url: parley.url, wsUrl: parley.wsUrl });
