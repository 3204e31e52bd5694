/** Users, devices and MLS groups built through the real API, with timings. */
import type { MlsGroup } from '@parley/mls-member';
import { BenchDevice } from './client.js';

/** Runs `task` over `items` with at most `limit` at once; results in order. */
export async function mapLimit<T, R>(
  items: T[],
  limit: number,
  task: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index] as T, index);
    }
  });
  await Promise.all(workers);
  return results;
}

/**
 * `users` users with `devicesPerUser` devices each; every device of user `u` uploads
 * `keyPackages(u)` key packages (or `keyPackages` if it is a number).
 */
export async function makeUsers(
  url: string,
  users: number,
  devicesPerUser: number,
  keyPackages: number | ((user: number) => number),
): Promise<BenchDevice[][]> {
  return mapLimit(Array.from({ length: users }), 4, async (_, user) => {
    const first = await BenchDevice.signUp(url);
    const devices = [first];
    for (let i = 1; i < devicesPerUser; i++) devices.push(await first.another());
    const count = typeof keyPackages === 'number' ? keyPackages : keyPackages(user);
    for (const device of devices) await device.uploadKeyPackages(count);
    return devices;
  });
}

/** One commit that added members: how many, and where the time went. */
export interface AddTiming {
  added: number;
  /** ts-mls creating the commit, Welcome and GroupInfo on the committer. */
  clientMs: number;
  /** The request body's encoding, then submitCommitBundle as the client sees it. */
  submitMs: number;
}

/** A conversation, its creator's MLS view, and how it was built. */
export interface BuiltGroup {
  conversationId: string;
  creator: BenchDevice;
  group: MlsGroup;
  members: BenchDevice[];
  adds: AddTiming[];
  buildMs: number;
}

/**
 * The creator's new group with every device of `users` added, `usersPerCommit` users per
 * commit (claim their key packages, commit the Adds, submit, adopt).
 */
export async function buildGroup(
  creator: BenchDevice,
  users: BenchDevice[][],
  usersPerCommit: number,
): Promise<BuiltGroup> {
  const start = performance.now();
  const { conversationId, group } = await creator.createConversation();
  const adds: AddTiming[] = [];
  for (let i = 0; i < users.length; i += usersPerCommit) {
    const chunk = users.slice(i, i + usersPerCommit);
    const keyPackages = await creator.claim(chunk.map((devices) => devices[0]?.userId ?? ''));
    const clientStart = performance.now();
    const bundle = await group.addMembers(keyPackages);
    const submitStart = performance.now();
    await creator.commit(conversationId, group, bundle);
    adds.push({
      added: keyPackages.length,
      clientMs: submitStart - clientStart,
      submitMs: performance.now() - submitStart,
    });
  }
  return {
    conversationId,
    creator,
    group,
    members: [creator, ...users.flat()],
    adds,
    buildMs: performance.now() - start,
  };
}
