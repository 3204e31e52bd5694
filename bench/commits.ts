/**
 * (c) Server time to accept a commit that adds 100 or 500 members to a new group: the
 * submitCommitBundle request as the client sees it, and its server-side split (MLS checks
 * before the transaction; the transaction; publishing; the rest is HTTP, GraphQL and input
 * decoding). The commit, Welcome and GroupInfo are made by ts-mls before the clock starts.
 */
import { BenchDevice } from './client.js';
import { waitForQuiet } from './cpu.js';
import { makeUsers } from './group.js';
import type { ParleyServer } from './server.js';

/** Knobs of the commit section. */
export interface CommitOptions {
  sizes: number[];
  runs: number;
  devicesPerUser: number;
  quietCores: number;
  log: (line: string) => void;
}

/** One accepted commit bundle. */
export interface CommitRun {
  added: number;
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

  const results: CommitRun[] = [];
  for (const size of options.sizes) {
    const userIds = users.slice(0, usersFor(size)).map((devices) => devices[0]?.userId ?? '');
    for (let run = 0; run < options.runs; run++) {
      const { conversationId, group } = await creator.createConversation();
      const keyPackages = await creator.claim(userIds);
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
        `  add ${result.added}: ${wallMs.toFixed(0)} ms (MLS checks ${result.checkMs.toFixed(0)}, ` +
          `transaction ${result.transactionMs.toFixed(0)}, publish ${result.publishMs.toFixed(0)}, ` +
          `HTTP/GraphQL ${result.outsideServiceMs.toFixed(0)}); client made it in ${clientMs.toFixed(0)} ms`,
      );
    }
  }
  return results;
}
