import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  inspectCommit,
  inspectWelcome,
  validateKeyPackage,
  verifyGroupInfo,
  type KeyPackagePolicy,
} from '@parley/mls';
import { LAST_RESORT_EXTENSION_TYPE } from '@parley/protocol';
import { decodeMlsMessage } from 'ts-mls';
import { decodeRatchetTree } from 'ts-mls/ratchetTree.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStateStore } from '../../state/file-state-store.js';
import { StateDecryptionError } from '../../state/sealed-state.js';
import type {
  CommitBundle,
  CommitSender,
  MlsEngine,
  MlsEngineFactory,
  ProcessedMessage,
} from '../mls-engine.js';
import { TsMlsEngineError, createTsMlsEngineFactory, tsMlsEngineFactory } from './index.js';

const text = new TextEncoder();
const fromText = new TextDecoder();
const DAY = 24 * 60 * 60;

/** The delivery service's key-package policy, as the server configures it by default. */
function policy(): KeyPackagePolicy {
  return {
    supportedCiphersuites: [1],
    maxLifetimeSeconds: 90 * DAY,
    now: new Date(),
    clockSkewSeconds: 300,
  };
}

function identity(n: number): string {
  return `0000000${n}-0000-4000-8000-000000000000:0${n}@parley.test`;
}

/**
 * A minimal delivery service for one group: one winner per epoch, an ordered log, Welcomes
 * routed by KeyPackageRef, and the same MLS checks the server runs on every bundle.
 */
class Relay {
  epoch = 0n;
  readonly log: Uint8Array[] = [];
  private readonly welcomes = new Map<string, Uint8Array>();
  private readonly cursors = new Map<MlsEngine, number>();

  constructor(readonly groupId: Uint8Array) {}

  readonly send: CommitSender = async (bundle: CommitBundle) => {
    const commit = await inspectCommit(bundle.commit);
    const groupInfo = await verifyGroupInfo(bundle.groupInfo, { verifyParentHashes: true });
    expect(groupInfo.externalPub).toBe(true);
    expect(groupInfo.epoch).toBe(commit.epoch + 1n);
    if (commit.epoch !== this.epoch) return 'rejected';
    this.epoch += 1n;
    this.log.push(bundle.commit);
    if (bundle.welcome !== undefined) {
      for (const ref of inspectWelcome(bundle.welcome).keyPackageRefs) {
        this.welcomes.set(Buffer.from(ref).toString('hex'), bundle.welcome);
      }
    }
    return 'accepted';
  };

  post(message: Uint8Array): void {
    this.log.push(message);
  }

  async welcomeFor(keyPackage: Uint8Array): Promise<Uint8Array> {
    // The server computes the ref when the key package is uploaded.
    const ref = Buffer.from((await validateKeyPackage(keyPackage, policy())).ref).toString('hex');
    const welcome = this.welcomes.get(ref);
    if (welcome === undefined) throw new Error('no Welcome for that key package');
    return welcome;
  }

  /** Joins a device at the end of the log (it reads only what comes after its Welcome). */
  async join(engine: MlsEngine, keyPackage: Uint8Array): Promise<void> {
    await engine.joinFromWelcome(await this.welcomeFor(keyPackage));
    this.cursors.set(engine, this.log.length);
  }

  /** Starts a device reading at a position of the log (default: its end). */
  follow(engine: MlsEngine, at = this.log.length): void {
    this.cursors.set(engine, at);
  }

  cursorOf(engine: MlsEngine): number {
    return this.cursors.get(engine) ?? 0;
  }

  /** Processes everything in the log after the device's cursor, in order. */
  async sync(engine: MlsEngine): Promise<ProcessedMessage[]> {
    const out: ProcessedMessage[] = [];
    let cursor = this.cursors.get(engine) ?? 0;
    while (cursor < this.log.length) {
      const entry = this.log[cursor];
      if (entry === undefined) break;
      out.push(await engine.processMessage(this.groupId, entry));
      cursor += 1;
      this.cursors.set(engine, cursor);
    }
    return out;
  }
}

/** Devices 1..n, each with a fresh engine. */
async function devices(count: 2, factory?: MlsEngineFactory): Promise<[MlsEngine, MlsEngine]>;
async function devices(
  count: 3,
  factory?: MlsEngineFactory,
): Promise<[MlsEngine, MlsEngine, MlsEngine]>;
async function devices(count: number, factory = tsMlsEngineFactory): Promise<MlsEngine[]> {
  const out: MlsEngine[] = [];
  for (let n = 1; n <= count; n++) out.push(await factory.create(identity(n)));
  return out;
}

/** One fresh key package of the engine. */
async function keyPackage(engine: MlsEngine): Promise<Uint8Array> {
  const [bytes] = await engine.generateKeyPackages(1);
  if (bytes === undefined) throw new Error('no key package');
  return bytes;
}

async function lastResortKeyPackage(engine: MlsEngine): Promise<Uint8Array> {
  const bytes = await engine.generateLastResortKeyPackage();
  if (bytes === null) throw new Error('no last-resort key package');
  return bytes;
}

function texts(processed: ProcessedMessage[]): string[] {
  return processed.flatMap((p) => (p.kind === 'application' ? [fromText.decode(p.plaintext)] : []));
}

/** The credential types each leaf of a GroupInfo's ratchet tree declares, in leaf order. */
function leafCredentialTypes(groupInfo: Uint8Array | undefined): string[][] {
  const message = groupInfo === undefined ? undefined : decodeMlsMessage(groupInfo, 0)?.[0];
  if (message?.wireformat !== 'mls_group_info') throw new Error('not a GroupInfo');
  const extension = message.groupInfo.extensions.find((e) => e.extensionType === 'ratchet_tree');
  const tree = extension === undefined ? undefined : decodeRatchetTree(extension.extensionData, 0);
  if (tree === undefined) throw new Error('the GroupInfo carries no ratchet tree');
  return tree[0].flatMap((node) =>
    node?.nodeType === 'leaf' ? [[...node.leaf.capabilities.credentials]] : [],
  );
}

function groupIdOf(label: string): Uint8Array {
  return text.encode(`group:${label}`);
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TsMlsEngineError);
  expect((error as TsMlsEngineError).code).toBe(code);
}

describe('TsMlsEngine key packages', () => {
  it('makes key packages and a last-resort one that the delivery service accepts', async () => {
    const engine = await tsMlsEngineFactory.create(identity(1));
    expect(engine.name).toBe('ts-mls');
    expect(engine.ciphersuite).toBe(1);
    const signatureKey = await engine.signaturePublicKey();
    const packages = await engine.generateKeyPackages(3);
    expect(packages).toHaveLength(3);
    for (const bytes of packages) {
      const validated = await validateKeyPackage(bytes, policy());
      expect(validated.ciphersuite).toBe(1);
      expect(fromText.decode(validated.identity)).toBe(identity(1));
      expect(validated.signatureKey).toEqual(signatureKey);
      expect(validated.extensionTypes).not.toContain(LAST_RESORT_EXTENSION_TYPE);
      const lifetime = (validated.notAfter.getTime() - validated.notBefore.getTime()) / 1000;
      expect(lifetime).toBeCloseTo(30 * DAY + 3600, -1);
      expect(validated.notBefore.getTime()).toBeLessThan(Date.now());
    }
    const lastResort = await validateKeyPackage(await lastResortKeyPackage(engine), policy());
    expect(lastResort.extensionTypes).toContain(LAST_RESORT_EXTENSION_TYPE);
    expect(lastResort.signatureKey).toEqual(signatureKey);
  });

  it('encodes without GREASE, so two key packages differ only in keys and signatures', async () => {
    const engine = await tsMlsEngineFactory.create(identity(1));
    const [a, b] = await engine.generateKeyPackages(2);
    expect(a?.length).toBe(b?.length);
  });

  it('declares the basic and x509 credential types in every leaf it makes', async () => {
    // A group created by core-crypto requires both (its required_capabilities extension), and
    // OpenMLS refuses key packages and leaves that lack one. ts-mls copies the capabilities of
    // the key package into the creator's leaf and into the leaf of every UpdatePath.
    const [alice, bob] = await devices(2);
    const wanted = ['basic', 'x509'];
    for (const bytes of [
      ...(await alice.generateKeyPackages(2)),
      await lastResortKeyPackage(alice),
    ]) {
      const message = decodeMlsMessage(bytes, 0)?.[0];
      if (message?.wireformat !== 'mls_key_package') throw new Error('not a key package');
      expect(message.keyPackage.leafNode.capabilities.credentials).toEqual(wanted);
    }
    const groupId = groupIdOf('credential-types');
    const relay = new Relay(groupId);
    const { groupInfo } = await alice.createGroup(groupId);
    if (groupInfo === null) throw new Error('ts-mls exports the GroupInfo of epoch 0');
    expect(leafCredentialTypes(groupInfo)).toEqual([wanted]);
    let bundle: CommitBundle | undefined;
    const keep: CommitSender = (made) => {
      bundle = made;
      return relay.send(made);
    };
    expect(await alice.addMembers(groupId, [await keyPackage(bob)], keep)).toBe('accepted');
    expect(leafCredentialTypes(bundle?.groupInfo)).toEqual([wanted, wanted]);
    expect(await alice.update(groupId, keep)).toBe('accepted');
    expect(leafCredentialTypes(bundle?.groupInfo)).toEqual([wanted, wanted]);
  });

  it('refuses ciphersuites it cannot run', async () => {
    await expectCode(
      tsMlsEngineFactory.create(identity(1), { ciphersuite: 77 }),
      'UNSUPPORTED_CIPHERSUITE',
    );
  });
});

describe('TsMlsEngine groups', () => {
  const groupId = groupIdOf('three');
  const relay = new Relay(groupId);
  let alice: MlsEngine;
  let bob: MlsEngine;
  let carol: MlsEngine;

  beforeAll(async () => {
    [alice, bob, carol] = await devices(3);
  });

  it('creates a group whose GroupInfo verifies, with the ratchet tree and external_pub', async () => {
    const { groupInfo } = await alice.createGroup(groupId);
    if (groupInfo === null) throw new Error('ts-mls exports the GroupInfo of epoch 0');
    const verified = await verifyGroupInfo(groupInfo, { verifyParentHashes: true });
    expect(verified.epoch).toBe(0n);
    expect(verified.externalPub).toBe(true);
    expect(verified.leaves.map((l) => fromText.decode(l.identity))).toEqual([identity(1)]);
    expect(await alice.epoch(groupId)).toBe(0n);
    expect(await alice.isMember(groupId)).toBe(true);
    relay.follow(alice);
    await expectCode(alice.createGroup(groupId), 'GROUP_EXISTS');
  });

  it('adds two members with one commit; they join from the Welcome', async () => {
    const bobPackage = await keyPackage(bob);
    const carolPackage = await keyPackage(carol);
    expect(await alice.addMembers(groupId, [bobPackage, carolPackage], relay.send)).toBe(
      'accepted',
    );
    expect(await alice.epoch(groupId)).toBe(1n);
    const commit = await inspectCommit(relay.log[0] ?? new Uint8Array());
    expect(commit.epoch).toBe(0n);
    expect(commit.proposals.map((p) => p.type)).toEqual(['add', 'add']);

    await relay.join(bob, bobPackage);
    await relay.join(carol, carolPackage);
    for (const engine of [alice, bob, carol]) {
      expect(await engine.epoch(groupId)).toBe(1n);
      expect(await engine.members(groupId)).toEqual([identity(1), identity(2), identity(3)]);
    }
    // The log echoes Alice's own commit: recognised, not an error.
    expect(await relay.sync(alice)).toEqual([
      { kind: 'commit', epoch: 1n, own: true, removedSelf: false },
    ]);
  });

  it('exchanges messages both ways and recognises its own echo', async () => {
    relay.post(await bob.encrypt(groupId, text.encode('hi from bob')));
    relay.post(await alice.encrypt(groupId, text.encode('hi from alice')));
    relay.post(await carol.encrypt(groupId, text.encode('hi from carol')));
    const seenByAlice = await relay.sync(alice);
    expect(texts(seenByAlice)).toEqual(['hi from bob', 'hi from alice', 'hi from carol']);
    expect(
      seenByAlice.map((p) => (p.kind === 'application' ? [p.own, p.senderIdentity] : null)),
    ).toEqual([
      [false, identity(2)],
      [true, identity(1)],
      [false, identity(3)],
    ]);
    expect(texts(await relay.sync(bob))).toEqual(['hi from bob', 'hi from alice', 'hi from carol']);
    expect(texts(await relay.sync(carol))).toEqual([
      'hi from bob',
      'hi from alice',
      'hi from carol',
    ]);
  });

  it('derives the same exporter secret at every member, and another one per label', async () => {
    const context = text.encode('call-1');
    const secrets = await Promise.all(
      [alice, bob, carol].map((e) => e.exportSecret(groupId, 'sframe', context, 32)),
    );
    expect(secrets[0]).toHaveLength(32);
    expect(secrets[1]).toEqual(secrets[0]);
    expect(secrets[2]).toEqual(secrets[0]);
    expect(await alice.exportSecret(groupId, 'other', context, 32)).not.toEqual(secrets[0]);
  });

  it('commits an update that the others process', async () => {
    const before = await bob.exportSecret(groupId, 'x', new Uint8Array(), 16);
    expect(await bob.update(groupId, relay.send)).toBe('accepted');
    expect(await relay.sync(bob)).toEqual([
      { kind: 'commit', epoch: 2n, own: true, removedSelf: false },
    ]);
    for (const engine of [alice, carol]) {
      expect(await relay.sync(engine)).toEqual([
        { kind: 'commit', epoch: 2n, own: false, removedSelf: false },
      ]);
    }
    const after = await Promise.all(
      [alice, bob, carol].map((e) => e.exportSecret(groupId, 'x', new Uint8Array(), 16)),
    );
    expect(after[0]).not.toEqual(before);
    expect(after[1]).toEqual(after[0]);
    expect(after[2]).toEqual(after[0]);
  });

  it('keeps its epoch when the delivery service rejects a commit, then retries', async () => {
    // Both commit for epoch 2; the relay takes Carol's first.
    expect(await carol.update(groupId, relay.send)).toBe('accepted');
    expect(await alice.update(groupId, relay.send)).toBe('rejected');
    expect(await alice.epoch(groupId)).toBe(2n);
    // Alice catches up with the winner, and her retry for epoch 3 wins.
    expect(await relay.sync(alice)).toEqual([
      { kind: 'commit', epoch: 3n, own: false, removedSelf: false },
    ]);
    expect(await alice.update(groupId, relay.send)).toBe('accepted');
    expect(await alice.epoch(groupId)).toBe(4n);
    await relay.sync(alice);
    await relay.sync(bob);
    await relay.sync(carol);
    for (const engine of [alice, bob, carol]) expect(await engine.epoch(groupId)).toBe(4n);
  });

  it('removes a member, who learns it was removed', async () => {
    await expectCode(alice.removeMembers(groupId, [identity(1)], relay.send), 'CANNOT_REMOVE_SELF');
    await expectCode(alice.removeMembers(groupId, [identity(9)], relay.send), 'UNKNOWN_MEMBER');
    expect(await alice.removeMembers(groupId, [identity(3), identity(9)], relay.send)).toBe(
      'accepted',
    );
    await relay.sync(alice);
    expect(await relay.sync(carol)).toEqual([
      { kind: 'commit', epoch: 5n, own: false, removedSelf: true },
    ]);
    expect(await carol.isMember(groupId)).toBe(false);
    await expectCode(carol.encrypt(groupId, text.encode('still here?')), 'NOT_A_MEMBER');
    expect(await relay.sync(bob)).toEqual([
      { kind: 'commit', epoch: 5n, own: false, removedSelf: false },
    ]);
    expect(await bob.members(groupId)).toEqual([identity(1), identity(2)]);

    relay.post(await alice.encrypt(groupId, text.encode('just us')));
    expect(texts(await relay.sync(bob))).toEqual(['just us']);
    // Carol can no longer read the group.
    await expectCode(relay.sync(carol), 'NOT_A_MEMBER');
  });

  it('reads messages out of order within an epoch, and from past epochs while keys remain', async () => {
    const m1 = await bob.encrypt(groupId, text.encode('one'));
    const m2 = await bob.encrypt(groupId, text.encode('two'));
    const m3 = await bob.encrypt(groupId, text.encode('three'));
    const read = async (m: Uint8Array) => {
      const p = await alice.processMessage(groupId, m);
      return p.kind === 'application' ? fromText.decode(p.plaintext) : p.kind;
    };
    expect(await read(m3)).toBe('three');
    expect(await read(m1)).toBe('one');
    expect(await read(m2)).toBe('two');
    // A replay finds its key consumed.
    await expectCode(alice.processMessage(groupId, m2), 'INVALID_MESSAGE');

    // Bob's message of epoch 5 reaches Alice after she moved to epoch 6.
    const late = await bob.encrypt(groupId, text.encode('late'));
    expect(await alice.update(groupId, relay.send)).toBe('accepted');
    expect(await read(late)).toBe('late');
    // A message of the next epoch waits until its commit is processed.
    const early = await alice.encrypt(groupId, text.encode('early'));
    await expectCode(bob.processMessage(groupId, early), 'FUTURE_EPOCH');
    await relay.sync(bob);
    expect(
      fromText.decode(
        ((await bob.processMessage(groupId, early)) as { plaintext: Uint8Array }).plaintext,
      ),
    ).toBe('early');
    await relay.sync(alice);
  });

  it('refuses messages of another group and non-group messages', async () => {
    const other = await alice.encrypt(groupId, text.encode('x'));
    await expectCode(bob.processMessage(groupIdOf('unknown'), other), 'UNKNOWN_GROUP');
    await expectCode(bob.processMessage(groupId, await keyPackage(alice)), 'INVALID_MESSAGE');
    await expectCode(bob.processMessage(groupId, new Uint8Array([1, 2, 3])), 'INVALID_MESSAGE');
  });
});

describe('TsMlsEngine key retention', () => {
  it('reads past epochs as far as ts-mls keeps their keys (4 by default), not further', async () => {
    const groupId = groupIdOf('retention');
    const relay = new Relay(groupId);
    const [alice, bob] = await devices(2);
    await alice.createGroup(groupId);
    const bobPackage = await keyPackage(bob);
    await alice.addMembers(groupId, [bobPackage], relay.send);
    await relay.join(bob, bobPackage);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 6; i++) {
      sent.push(await alice.encrypt(groupId, text.encode(`epoch ${i + 1}`)));
      expect(await alice.update(groupId, relay.send)).toBe('accepted');
    }
    await relay.sync(bob);
    expect(await bob.epoch(groupId)).toBe(7n);
    // Epochs 1 and 2 are gone; 3 to 6 are kept.
    await expectCode(bob.processMessage(groupId, sent[0] ?? new Uint8Array()), 'EPOCH_TOO_OLD');
    await expectCode(bob.processMessage(groupId, sent[1] ?? new Uint8Array()), 'EPOCH_TOO_OLD');
    for (const message of sent.slice(2)) {
      expect((await bob.processMessage(groupId, message)).kind).toBe('application');
    }
  });

  it('keeps the keys of 10 skipped messages per sender within an epoch (ts-mls default)', async () => {
    const groupId = groupIdOf('generations');
    const relay = new Relay(groupId);
    const [alice, bob] = await devices(2);
    await alice.createGroup(groupId);
    const bobPackage = await keyPackage(bob);
    await alice.addMembers(groupId, [bobPackage], relay.send);
    await relay.join(bob, bobPackage);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 12; i++) sent.push(await alice.encrypt(groupId, text.encode(`m${i}`)));
    // Reading m11 first skips generations 0–10; the 10 newest of them are kept.
    expect((await bob.processMessage(groupId, sent[11] ?? new Uint8Array())).kind).toBe(
      'application',
    );
    await expectCode(bob.processMessage(groupId, sent[0] ?? new Uint8Array()), 'INVALID_MESSAGE');
    for (const message of sent.slice(1, 11)) {
      expect((await bob.processMessage(groupId, message)).kind).toBe('application');
    }
  });

  it('keeps more epochs when configured to', async () => {
    const factory = createTsMlsEngineFactory({ keyRetention: { retainKeysForEpochs: 8 } });
    const groupId = groupIdOf('retention-8');
    const relay = new Relay(groupId);
    const [alice, bob] = await devices(2, factory);
    await alice.createGroup(groupId);
    const bobPackage = await keyPackage(bob);
    await alice.addMembers(groupId, [bobPackage], relay.send);
    await relay.join(bob, bobPackage);
    const first = await alice.encrypt(groupId, text.encode('old'));
    for (let i = 0; i < 6; i++) await alice.update(groupId, relay.send);
    await relay.sync(bob);
    expect((await bob.processMessage(groupId, first)).kind).toBe('application');
  });
});

describe('TsMlsEngine commit verdicts', () => {
  it('adopts a commit whose send failed once the log shows it, and drops it when a rival wins', async () => {
    const groupId = groupIdOf('verdicts');
    const relay = new Relay(groupId);
    const [alice, bob] = await devices(2);
    await alice.createGroup(groupId);
    relay.follow(alice);
    const bobPackage = await keyPackage(bob);
    await alice.addMembers(groupId, [bobPackage], relay.send);
    await relay.join(bob, bobPackage);
    await relay.sync(alice);

    // The server stores the commit but the answer is lost.
    const lostAnswer: CommitSender = async (bundle) => {
      await relay.send(bundle);
      throw new Error('socket closed');
    };
    await expect(alice.update(groupId, lostAnswer)).rejects.toThrow('socket closed');
    expect(await alice.epoch(groupId)).toBe(1n);
    expect(await relay.sync(alice)).toEqual([
      { kind: 'commit', epoch: 2n, own: true, removedSelf: false },
    ]);
    expect(await alice.epoch(groupId)).toBe(2n);
    await relay.sync(bob);

    // A commit that never reached the server, then a rival's commit for that epoch.
    const neverSent: CommitSender = () => Promise.reject(new Error('offline'));
    await expect(alice.update(groupId, neverSent)).rejects.toThrow('offline');
    expect(await bob.update(groupId, relay.send)).toBe('accepted');
    await relay.sync(bob);
    expect(await relay.sync(alice)).toEqual([
      { kind: 'commit', epoch: 3n, own: false, removedSelf: false },
    ]);
    relay.post(await alice.encrypt(groupId, text.encode('after the race')));
    expect(texts(await relay.sync(bob))).toEqual(['after the race']);
  });

  it('processes the log while its own send is in flight without deadlocking', async () => {
    const groupId = groupIdOf('in-flight');
    const relay = new Relay(groupId);
    const [alice, bob] = await devices(2);
    await alice.createGroup(groupId);
    relay.follow(alice);
    const bobPackage = await keyPackage(bob);
    await alice.addMembers(groupId, [bobPackage], relay.send);
    await relay.join(bob, bobPackage);
    await relay.sync(alice);
    relay.post(await bob.encrypt(groupId, text.encode('while you commit')));

    // The live subscription delivers the echo of the commit before the mutation answers.
    const echoFirst: CommitSender = async (bundle) => {
      const verdict = await relay.send(bundle);
      expect(texts(await relay.sync(alice))).toEqual(['while you commit']);
      return verdict;
    };
    expect(await alice.update(groupId, echoFirst)).toBe('accepted');
    expect(await alice.epoch(groupId)).toBe(2n);
    await relay.sync(bob);
    relay.post(await bob.encrypt(groupId, text.encode('epoch 2')));
    expect(texts(await relay.sync(alice))).toEqual(['epoch 2']);
  });
});

describe('TsMlsEngine joins', () => {
  it('joins groups whose tree ts-mls 1.6.4 itself rejects (unmerged leaves at several heights)', async () => {
    const groupId = groupIdOf('unmerged');
    const relay = new Relay(groupId);
    const engines = await Promise.all(
      [1, 2, 3, 4, 5, 6, 7, 8].map((n) => tsMlsEngineFactory.create(identity(n))),
    );
    const [owner, ...others] = engines;
    if (owner === undefined) throw new Error('no owner');
    await owner.createGroup(groupId);
    relay.follow(owner);
    const first = await Promise.all(others.slice(0, 5).map((e) => keyPackage(e)));
    await owner.addMembers(groupId, first, relay.send);
    await Promise.all(
      others.slice(0, 5).map((e, i) => relay.join(e, first[i] ?? new Uint8Array())),
    );
    await relay.sync(owner);
    // A Remove forces a path (the owner's ancestors fill), then an add-only commit leaves the
    // new leaves unmerged at ancestors of different heights.
    await owner.removeMembers(groupId, [identity(4), identity(6)], relay.send);
    const later = others.slice(5);
    const second = await Promise.all(later.map((e) => keyPackage(e)));
    await relay.sync(owner);
    expect(await owner.addMembers(groupId, second, relay.send)).toBe('accepted');
    await Promise.all(later.map((e, i) => relay.join(e, second[i] ?? new Uint8Array())));

    const members = [owner, ...others.filter((_, i) => i !== 2 && i !== 4)];
    for (const engine of members) await relay.sync(engine);
    relay.post(await (later[1] ?? owner).encrypt(groupId, text.encode('joined anyway')));
    for (const engine of members) {
      expect(await engine.epoch(groupId)).toBe(3n);
      const seen = await relay.sync(engine);
      expect(seen).toHaveLength(1);
      expect(seen[0]?.kind).toBe('application');
    }
  });

  it('forgets a used key package but keeps the last-resort one for the next Welcome', async () => {
    const factory = tsMlsEngineFactory;
    const [alice, bob] = await devices(2, factory);
    const once = await keyPackage(bob);
    const lastResort = await lastResortKeyPackage(bob);
    for (const label of ['lr-1', 'lr-2']) {
      const groupId = groupIdOf(label);
      const relay = new Relay(groupId);
      await alice.createGroup(groupId);
      await alice.addMembers(groupId, [lastResort], relay.send);
      await relay.join(bob, lastResort);
      expect(await bob.members(groupId)).toEqual([identity(1), identity(2)]);
    }
    const groupId = groupIdOf('once');
    const relay = new Relay(groupId);
    await alice.createGroup(groupId);
    await alice.addMembers(groupId, [once], relay.send);
    const welcome = await relay.welcomeFor(once);
    await bob.joinFromWelcome(welcome);
    await expectCode(bob.joinFromWelcome(welcome), 'NO_MATCHING_KEY_PACKAGE');
  });
});

describe('TsMlsEngine state at rest', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'parley-ts-mls-'));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('continues mid-conversation after save → encrypt → file → decrypt → restore', async () => {
    const groupId = groupIdOf('restart');
    const relay = new Relay(groupId);
    const [alice, bob, carol] = await devices(3);
    await alice.createGroup(groupId);
    relay.follow(alice);
    const bobPackage = await keyPackage(bob);
    const carolPackage = await keyPackage(carol);
    await bob.generateKeyPackages(2); // unused ones must survive the restart too
    await alice.addMembers(groupId, [bobPackage, carolPackage], relay.send);
    await relay.join(bob, bobPackage);
    await relay.join(carol, carolPackage);
    relay.post(await bob.encrypt(groupId, text.encode('before the restart')));
    expect(texts(await relay.sync(bob))).toEqual(['before the restart']);

    const path = join(directory, 'nested', 'bob.state');
    const store = new FileStateStore(path, {
      passphrase: 'correct horse battery staple',
      scrypt: { logN: 10, r: 8, p: 1 },
    });
    await store.save(await bob.saveState());
    const cursor = relay.cursorOf(bob);

    // Life goes on while Bob is down: a message, a commit, a message of the new epoch.
    relay.post(await alice.encrypt(groupId, text.encode('while you were away')));
    expect(await carol.update(groupId, relay.send)).toBe('accepted');
    relay.post(await carol.encrypt(groupId, text.encode('new epoch')));

    const reopened = new FileStateStore(path, { passphrase: 'correct horse battery staple' });
    const plain = await reopened.load();
    if (plain === undefined) throw new Error('no state');
    const restored = await tsMlsEngineFactory.restore(plain);
    expect(restored.identity).toBe(identity(2));
    expect(await restored.signaturePublicKey()).toEqual(await bob.signaturePublicKey());
    expect(await restored.epoch(groupId)).toBe(1n);
    // Resume from the cursor Bob had when he saved.
    relay.follow(restored, cursor);
    const seen = await relay.sync(restored);
    expect(seen.map((p) => p.kind)).toEqual(['application', 'commit', 'application']);
    expect(texts(seen)).toEqual(['while you were away', 'new epoch']);
    expect(await restored.epoch(groupId)).toBe(2n);

    // And onwards, in both directions, with commits.
    relay.post(await restored.encrypt(groupId, text.encode('back again')));
    expect(texts(await relay.sync(alice))).toContain('back again');
    expect(texts(await relay.sync(carol))).toContain('back again');
    expect(await restored.update(groupId, relay.send)).toBe('accepted');
    await relay.sync(alice);
    await relay.sync(carol);
    await relay.sync(restored);
    relay.post(await alice.encrypt(groupId, text.encode('welcome back')));
    expect(texts(await relay.sync(restored))).toEqual(['welcome back']);
    expect(await restored.exportSecret(groupId, 'x', new Uint8Array(), 32)).toEqual(
      await carol.exportSecret(groupId, 'x', new Uint8Array(), 32),
    );
    await store.save(await restored.saveState());

    const wrong = new FileStateStore(path, { passphrase: 'incorrect horse' });
    await expect(wrong.load()).rejects.toBeInstanceOf(StateDecryptionError);
    await expect(wrong.load()).rejects.toMatchObject({ reason: 'AUTHENTICATION_FAILED' });
  });

  it('restores own-message memory, pending commits and held key packages', async () => {
    const groupId = groupIdOf('memory');
    const relay = new Relay(groupId);
    const [alice, bob] = await devices(2);
    await alice.createGroup(groupId);
    relay.follow(alice);
    const bobPackage = await keyPackage(bob);
    const spare = await keyPackage(bob);
    await alice.addMembers(groupId, [bobPackage], relay.send);
    await relay.join(bob, bobPackage);
    relay.post(await alice.encrypt(groupId, text.encode('mine')));
    // A commit whose verdict never came back.
    await expect(
      alice.update(groupId, async (bundle) => {
        await relay.send(bundle);
        throw new Error('crash');
      }),
    ).rejects.toThrow('crash');

    const restored = await tsMlsEngineFactory.restore(await alice.saveState());
    const seen = await relay.sync(restored);
    expect(seen).toEqual([
      { kind: 'commit', epoch: 1n, own: true, removedSelf: false },
      {
        kind: 'application',
        plaintext: text.encode('mine'),
        senderIdentity: identity(1),
        own: true,
      },
      { kind: 'commit', epoch: 2n, own: true, removedSelf: false },
    ]);
    expect(await restored.epoch(groupId)).toBe(2n);
    await relay.sync(bob);
    expect(await bob.epoch(groupId)).toBe(2n);

    const restoredBob = await tsMlsEngineFactory.restore(await bob.saveState());
    const other = groupIdOf('memory-2');
    const relay2 = new Relay(other);
    await restored.createGroup(other);
    await restored.addMembers(other, [spare], relay2.send);
    await relay2.join(restoredBob, spare);
    expect(await restoredBob.members(other)).toEqual([identity(1), identity(2)]);
  });

  it('refuses state that does not decode', async () => {
    const engine = await tsMlsEngineFactory.create(identity(1));
    const state = await engine.saveState();
    await expectCode(tsMlsEngineFactory.restore(state.slice(0, state.length - 1)), 'INVALID_STATE');
    await expectCode(tsMlsEngineFactory.restore(new Uint8Array([1, 2, 3, 4, 5])), 'INVALID_STATE');
    await expectCode(tsMlsEngineFactory.restore(Uint8Array.of(...state, 0)), 'INVALID_STATE');
  });
});
