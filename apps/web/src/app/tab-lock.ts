/**
 * One tab owns this browser's Parley device at a time (Web Locks): two tabs running the same
 * MLS state would each advance it and save over the other's, and a device whose state forked
 * cannot decrypt. A second tab is told and may take over; the owner is asked (BroadcastChannel)
 * to close its client and let go, so the state is saved before the new owner loads it.
 */
const LOCK = 'parley-device';
const CHANNEL = 'parley-tabs';

/** What a tab that holds the lock is told to do. */
export interface TabLock {
  /** Lets go of the lock (after the owner closed its client). */
  release(): void;
}

/** Takes the lock if no other tab holds it; null if one does. */
export function tryLock(onTakeover: () => void): Promise<TabLock | null> {
  return request(true, onTakeover);
}

/** Asks the tab that holds the lock to let go, then waits for it. */
export function takeOver(onTakeover: () => void): Promise<TabLock> {
  const channel = new BroadcastChannel(CHANNEL);
  channel.postMessage('take-over');
  channel.close();
  return request(false, onTakeover) as Promise<TabLock>;
}

function request(ifAvailable: boolean, onTakeover: () => void): Promise<TabLock | null> {
  return new Promise((resolve, reject) => {
    navigator.locks
      .request(LOCK, { ifAvailable }, (lock) => {
        if (lock === null) {
          resolve(null);
          return undefined;
        }
        return new Promise<void>((released) => {
          const channel = new BroadcastChannel(CHANNEL);
          channel.onmessage = (event) => {
            if (event.data === 'take-over') onTakeover();
          };
          resolve({
            release() {
              channel.close();
              released();
            },
          });
        });
      })
      .catch(reject);
  });
}
