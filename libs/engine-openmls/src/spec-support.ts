// Helpers for the specs only: excluded from the build (tsconfig.json) and never re-exported.
import { randomUUID } from 'node:crypto';
import type { CommitBundle, CommitSender, MlsEngine } from '@parley/client';
import {
  inspectCommit,
  inspectWelcome,
  validateKeyPackage,
  verifyGroupInfo,
  type InspectedCommit,
  type KeyPackagePolicy,
  type VerifiedGroupInfo,
} from '@parley/mls';
import { expect } from 'vitest';

/** Parley's default key-package policy, for ciphersuite 1. */
export function policy(supportedCiphersuites: readonly number[] = [1]): KeyPackagePolicy {
  return {
    supportedCiphersuites,
    maxLifetimeSeconds: 90 * 24 * 60 * 60,
    now: new Date(),
    clockSkewSeconds: 300,
  };
}

/** A Parley identity core-crypto can spell: a device id whose first hex digit is not 0. */
export function identity(domain = 'parley.test'): string {
  const device = (0x8000_0000_0000_0000n | BigInt(Math.floor(Math.random() * 2 ** 52))).toString(
    16,
  );
  return `${randomUUID()}:${device}@${domain}`;
}

export const text = (value: string): Uint8Array => new TextEncoder().encode(value);
export const read = (value: Uint8Array): string => new TextDecoder().decode(value);
export const hex = (value: Uint8Array): string => Buffer.from(value).toString('hex');

/** What the simulated server checked and kept of one accepted commit bundle. */
export interface AcceptedBundle {
  bundle: CommitBundle;
  commit: InspectedCommit;
  groupInfo: VerifiedGroupInfo;
  welcomeRefs: string[];
}

/**
 * The delivery service's part of one group, reduced to what the engine specs need: it orders
 * commits one per epoch (STALE_EPOCH otherwise), checks every bundle with @parley/mls as the
 * server does, and keeps the log of accepted commits and application messages.
 */
export class SimulatedGroup {
  epoch = 0n;
  readonly log: Uint8Array[] = [];
  readonly accepted: AcceptedBundle[] = [];
  rejected = 0;

  constructor(readonly groupId: Uint8Array) {}

  /** A CommitSender that checks the bundle and accepts it if it is for the current epoch. */
  sender(): CommitSender {
    return async (bundle) => {
      const commit = await inspectCommit(bundle.commit);
      expect(hex(commit.groupId)).toBe(hex(this.groupId));
      if (commit.epoch !== this.epoch) {
        this.rejected++;
        return 'rejected';
      }
      const groupInfo = await verifyGroupInfo(bundle.groupInfo, { verifyParentHashes: true });
      expect(groupInfo.epoch).toBe(this.epoch + 1n);
      expect(hex(groupInfo.groupId)).toBe(hex(this.groupId));
      const welcomeRefs =
        bundle.welcome === undefined
          ? []
          : inspectWelcome(bundle.welcome).keyPackageRefs.map((ref) => hex(ref));
      this.accepted.push({ bundle, commit, groupInfo, welcomeRefs });
      this.log.push(bundle.commit);
      this.epoch++;
      return 'accepted';
    };
  }

  /** Stores an application message in the log. */
  post(message: Uint8Array): Uint8Array {
    this.log.push(message);
    return message;
  }

  /** The newest accepted bundle. */
  last(): AcceptedBundle {
    const last = this.accepted.at(-1);
    if (last === undefined) throw new Error('no commit accepted yet');
    return last;
  }
}

/** Validates key packages as the server does and returns their refs (hex). */
export async function refsOf(keyPackages: Uint8Array[], suites?: number[]): Promise<string[]> {
  return Promise.all(
    keyPackages.map(async (keyPackage) =>
      hex((await validateKeyPackage(keyPackage, policy(suites))).ref),
    ),
  );
}

/** The roster of a GroupInfo as identities in leaf order. */
export function rosterOf(groupInfo: VerifiedGroupInfo): string[] {
  return groupInfo.leaves.map((leaf) => read(leaf.identity));
}

/** Runs `run` and returns the `code` of what it threw. */
export async function codeOf(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (error) {
    if (error instanceof Error && 'code' in error && typeof error.code === 'string') {
      return error.code;
    }
    throw error;
  }
  return 'NO_ERROR';
}

/** Processes every log entry from `from` on, returning what each did. */
export async function catchUp(engine: MlsEngine, group: SimulatedGroup, from: number) {
  const results = [];
  for (const message of group.log.slice(from)) {
    results.push(await engine.processMessage(group.groupId, message));
  }
  return results;
}
