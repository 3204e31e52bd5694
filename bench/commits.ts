/**
 * (c) Server time to accept a commit that adds 100 or 500 members to a new group, and (f) one
 * that adds 1 member to a group of 1,000: the submitCommitBundle request as the client sees it,
 * and its server-side split (MLS checks before the transaction; the transaction; publishing;
 * the rest is HTTP, GraphQL and input decoding). The commit, Welcome and GroupInfo are made by
 * ts-mls before the clock starts.
 */
import os from 'node:os';
import type { MlsGroup } from '@parley/mls-member';
import { BenchDevice } from './client.js';
import { waitForQuiet } from './cpu.js';
import { buildGroup, makeUsers } from './group.js';
import type { ParleyServer } from './server.js';

/** Knobs of the commit section. */
export interface CommitOptions {
  /** (c): members added to a new group, `runs` times each. */
  sizes: number[];
  /** (f): groups of about this many devices, into which 1 member is added `runs` times. */
  oneInto: number[];
  runs: number;
  devicesPerUser: number;
  quietCores: number;
  log: (line: string) => void;
}

/** One accepted commit bundle. */
export interface CommitRun {
  added: number;
  /** Members of the group before the commit (1 for a new group: its creator). */
  into: number;
  /** The machine's 1-minute load average right after the commit. */
  loadAverage: number;
  /** Encoded sizes of the commit, the Welcome and the GroupInfo (bytes). */
  commitBytes: number;
  welcomeBytes: number;
  groupInfoBytes: number;
  /** ts-mls making the bundle on the committing client (not part of the server's time). */
  clientMs: number;
  /** submitCommitBundle, request sent to response read, as the client sees it. */
  wallMs: number;
  /** Server side: MLS checks (decode, GroupInfo signature, tree hash, every leaf), ... */
  checkMs: number;
  /** ... the transaction (roster, key packages, rows), publishing the events, ... */
  transactionMs: number;
  publishMs: number;
  /** ... and everything else: HTTP, JSON, GraphQL parsing and validation, base64, auth. */
  outsideServiceMs: number;
}

export async function commits(parley: ParleyServer, options: CommitOptions): Promise<CommitRun[]> {
  const { log } = options;
  const results: CommitRun[] = [];
  /** Posts a prepared commit bundle, timed, and reads the server's split of it. */
  const timed = async (
    creator: BenchDevice,
    conversationId: string,
    group: MlsGroup,
    keyPackages: Uint8Array[],
    into: number,
  ) => {
    const clientStart = performance.now();
    const bundle = await group.addMembers(keyPackages);
    const clientMs = performance.now() - clientStart;
    const body = creator.submitBody(conversationId, bundle);
    if (options.quietCores > 0) await waitForQuiet(options.quietCores, 180_000);
    const start = performance.now();
    await creator.post(body);
    const wallMs = performance.now() - start;
    group.confirmCommit();
    const server = parley.commits.at(-1);
    if (server === undefined) throw new Error('the commit was not timed on the server');
    const result: CommitRun = {
      added: keyPackages.length,
      into,
      loadAverage: os.loadavg()[0] ?? Number.NaN,
      commitBytes: bundle.commit.length,
      welcomeBytes: bundle.welcome?.length ?? 0,
      groupInfoBytes: bundle.groupInfo.length,
      clientMs,
      wallMs,
      checkMs: server.checkMs,
      transactionMs: server.serviceMs - server.checkMs - server.publishMs,
      publishMs: server.publishMs,
      outsideServiceMs: wallMs - server.serviceMs,
    };
    results.push(result);
    log(
      `  add ${result.added} into ${into}: ${wallMs.toFixed(0)} ms (MLS checks ${result.checkMs.toFixed(0)}, ` +
        `transaction ${result.transactionMs.toFixed(0)}, publish ${result.publishMs.toFixed(0)}, ` +
        `HTTP/GraphQL ${result.outsideServiceMs.toFixed(0)}); client made it in ${clientMs.toFixed(0)} ms; ` +
        `load average ${result.loadAverage.toFixed(2)}`,
    );
  };
  if (options.sizes.length > 0) await newGroups(parley, options, timed);
  for (const size of options.oneInto) await oneIntoGroup(parley, options, size, timed);
  return results;
}

type Timed = (
  creator: BenchDevice,
  conversationId: string,
  group: MlsGroup,
  keyPackages: Uint8Array[],
  into: number,
) => Promise<void>;

/** (f): a group of `size` devices built with real MLS, then `runs` commits adding 1 device each. */
async function oneIntoGroup(
  parley: ParleyServer,
  options: CommitOptions,
  size: number,
  timed: Timed,
): Promise<void> {
  const { log } = options;
  const setupStart = performance.now();
  const creator = await BenchDevice.signUp(parley.url);
  const perUser = 9;
  const members = await makeUsers(parley.url, Math.ceil((size - 1) / perUser), perUser, 1);
  const singles = await makeUsers(parley.url, options.runs, 1, 1);
  // Commits of about 108 Adds, as in (d).
  const built = await buildGroup(creator, members, 12);
  log(
    `  group of ${built.members.length} built in ${((performance.now() - setupStart) / 1000).toFixed(1)} s ` +
      `(${built.adds.length} commits)`,
  );
  let into = built.members.length;
  for (const single of singles) {
    const keyPackages = await creator.claim([single[0]?.userId ?? '']);
    await timed(creator, built.conversationId, built.group, keyPackages, into);
    into += keyPackages.length;
  }
}

/** (c): for each size, `runs` new groups, each getting that many members in one commit. */
async function newGroups(parley: ParleyServer, options: CommitOptions, timed: Timed) {
  const { log } = options;
  const largest = Math.max(...options.sizes);
  const userCount = Math.ceil(largest / options.devicesPerUser);
  const usersFor = (size: number) => Math.ceil(size / options.devicesPerUser);
  const setupStart = performance.now();
  const creator = await BenchDevice.signUp(parley.url);
  // A user takes part in every size whose first users include it, once per run.
  const users = await makeUsers(
    parley.url,
    userCount,
    options.devicesPerUser,
    (user) => options.runs * options.sizes.filter((size) => user < usersFor(size)).length,
  );
  log(
    `  ${users.flat().length} devices with key packages in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`,
  );

  for (const size of options.sizes) {
    const userIds = users.slice(0, usersFor(size)).map((devices) => devices[0]?.userId ?? '');
    for (let run = 0; run < options.runs; run++) {
      const { conversationId, group } = await creator.createConversation();
      const keyPackages = await creator.claim(userIds);
      await timed(creator, conversationId, group, keyPackages, 1);
    }
  }
}
