import { SFrameError, SFrameReceiver } from '@parley/sframe';
import { beforeEach, describe, expect, it } from 'vitest';
import type { CommitBundle, MlsEngine } from '../engine/mls-engine.js';
import { tsMlsEngineFactory } from '../engine/ts-mls/index.js';
import { CallKeys, type EpochSource } from './call-keys.js';
import {
  createDecryptTransform,
  createEncryptTransform,
  vp8ClearBytes,
} from './frame-transform.js';
import { CALL_SFRAME_SUITE, crossEngineBaseKey, mlsKid } from './media-keys.js';

const EMPTY = new Uint8Array(0);
const identity = (n: number) => `0000000${n}-0000-4000-8000-000000000000:0${n}@parley.test`;
const frame = (text: string) => new TextEncoder().encode(text);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** A real engine's epochs, told of changes by the test (what Conversation does in the SDK). */
class EngineEpochs implements EpochSource {
  private readonly listeners = new Set<() => void>();
  constructor(
    readonly engine: MlsEngine,
    private readonly groupId: Uint8Array,
  ) {}

  async epochSecrets(exports: readonly { label: string; length: number }[]) {
    if (!(await this.engine.isMember(this.groupId))) return null;
    const secrets: Uint8Array[] = [];
    for (const { label, length } of exports) {
      secrets.push(await this.engine.exportSecret(this.groupId, label, EMPTY, length));
    }
    return {
      epoch: await this.engine.epoch(this.groupId),
      members: await this.engine.members(this.groupId),
      secrets,
    };
  }

  onEpochChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** A group of ts-mls engines where every commit is accepted and handed to the others. */
class Group {
  readonly groupId = crypto.getRandomValues(new Uint8Array(32));
  readonly engines: MlsEngine[] = [];

  at(index: number): MlsEngine {
    const engine = this.engines[index];
    if (engine === undefined) throw new Error(`no engine ${index}`);
    return engine;
  }

  static async of(count: number): Promise<Group> {
    const group = new Group();
    for (let n = 1; n <= count; n++) {
      group.engines.push(await tsMlsEngineFactory.create(identity(n)));
    }
    const [first, ...rest] = group.engines as [MlsEngine, ...MlsEngine[]];
    await first.createGroup(group.groupId);
    for (const engine of rest) await group.add(first, engine);
    return group;
  }

  async add(committer: MlsEngine, joiner: MlsEngine): Promise<void> {
    const keyPackages = await joiner.generateKeyPackages(1);
    await this.commit(committer, (send) => committer.addMembers(this.groupId, keyPackages, send));
  }

  /** Runs a commit, hands it to every other member engine, and a Welcome to its joiners. */
  async commit(
    committer: MlsEngine,
    make: (send: (bundle: CommitBundle) => Promise<'accepted'>) => Promise<unknown>,
  ): Promise<void> {
    let made: CommitBundle | undefined;
    await make((bundle) => {
      made = bundle;
      return Promise.resolve('accepted');
    });
    if (made === undefined) throw new Error('no commit');
    for (const engine of this.engines) {
      if (engine === committer || !(await engine.isMember(this.groupId))) continue;
      await engine.processMessage(this.groupId, made.commit);
    }
    if (made.welcome !== undefined) {
      for (const engine of this.engines) {
        if (!(await engine.isMember(this.groupId))) {
          await engine.joinFromWelcome(made.welcome).catch(() => undefined);
        }
      }
    }
  }
}

async function keysOf(group: Group, index: number, options = {}): Promise<CallKeys> {
  const engine = group.at(index);
  return CallKeys.open(new EngineEpochs(engine, group.groupId), {
    identity: identity(index + 1),
    ...options,
  });
}

describe('CallKeys on ts-mls', () => {
  let group: Group;
  beforeEach(async () => {
    group = await Group.of(2);
  });

  it('follows RFC 9605 §5.2 exactly with the rfc9605 schedule', async () => {
    const ana = await keysOf(group, 0, { schedule: 'rfc9605' });
    const ben = await keysOf(group, 1, { schedule: 'rfc9605' });
    // Epoch 1, two members (S = 1), E = 8: Ana at index 0, Ben at index 1.
    expect(ana.kid).toBe(0x001n);
    expect(ben.kid).toBe(0x101n);
    const encryptor = await ana.createEncryptor();
    expect(encryptor.kid).toBe((encryptor.context << 9n) | 0x001n);
    const sent = await encryptor.encrypt(frame('hello'));
    const got = await ben.decrypt(sent);
    expect(new TextDecoder().decode(got.plaintext)).toBe('hello');
    expect(got.sender.identity).toBe(identity(1));
    expect(got.epoch).toBe(1n);
    // Independently: base_key = MLS-Exporter("SFrame 1.0 Base Key", "", Nk = 16), keys per §4.4.2.
    const baseKey = await group.at(0).exportSecret(group.groupId, 'SFrame 1.0 Base Key', EMPTY, 16);
    const plain = new SFrameReceiver({ suite: CALL_SFRAME_SUITE });
    await plain.addKey(encryptor.kid, baseKey);
    expect(new TextDecoder().decode((await plain.decrypt(sent)).plaintext)).toBe('hello');
    expect(ana.securityCode).toBe(ben.securityCode);
    ana.close();
    ben.close();
  });

  it('derives the cross-engine base key from the "exporter" export', async () => {
    const ana = await keysOf(group, 0);
    const ben = await keysOf(group, 1);
    const encryptor = await ben.createEncryptor();
    const sent = await encryptor.encrypt(frame('cross'));
    expect((await ana.decrypt(sent)).sender.identity).toBe(identity(2));
    const exported = await group.at(1).exportSecret(group.groupId, 'exporter', EMPTY, 32);
    const plain = new SFrameReceiver({ suite: CALL_SFRAME_SUITE });
    await plain.addKey(encryptor.kid, await crossEngineBaseKey(exported));
    expect((await plain.decrypt(sent)).plaintext).toEqual(frame('cross'));
    // Its own frames are not another member's.
    await expect(ben.decrypt(sent)).rejects.toMatchObject({ code: 'UNKNOWN_KID' });
    // Two streams never share a KID (nor key and counter).
    expect((await ben.createEncryptor()).kid).not.toBe(encryptor.kid);
    ana.close();
    ben.close();
  });

  it('rekeys at a new epoch and forgets the previous one after the grace time', async () => {
    const ana = await keysOf(group, 0, { graceMs: 300 });
    const ben = await keysOf(group, 1, { graceMs: 300 });
    const encryptor = await ana.createEncryptor();
    const oldKid = encryptor.kid;
    const codeBefore = ben.securityCode;
    const inFlight = await encryptor.encrypt(frame('old 1'));
    const late = await encryptor.encrypt(frame('old 2'));
    await group.commit(group.at(0), (send) => group.at(0).update(group.groupId, send));
    await Promise.all([ana.refresh(), ben.refresh()]);
    expect(encryptor.kid).not.toBe(oldKid);
    expect(ben.epoch).toBe(2n);
    expect(ben.securityCode).toBe(ana.securityCode);
    expect(ben.securityCode).not.toBe(codeBefore);
    const fresh = await encryptor.encrypt(frame('new'));
    expect((await ben.decrypt(fresh)).epoch).toBe(2n);
    // Within the window the old epoch's frames still decrypt, after it they do not.
    expect((await ben.decrypt(inFlight)).epoch).toBe(1n);
    expect(ben.heldEpochs().sort()).toEqual([1n, 2n]);
    await sleep(400);
    expect(ben.heldEpochs()).toEqual([2n]);
    await expect(ben.decrypt(late)).rejects.toMatchObject({ code: 'UNKNOWN_KID' });
    ana.close();
    ben.close();
  });

  it('leaves a removed member nothing that decrypts frames after the rekey', async () => {
    const three = await Group.of(3);
    const ana = await keysOf(three, 0);
    const cat = await keysOf(three, 2);
    const catExport = await three.at(2).exportSecret(three.groupId, 'exporter', EMPTY, 32);
    const ana0 = await ana.createEncryptor();
    expect((await cat.decrypt(await ana0.encrypt(frame('before')))).epoch).toBe(2n);
    await three.commit(three.at(0), (send) =>
      three.at(0).removeMembers(three.groupId, [identity(3)], send),
    );
    await Promise.all([ana.refresh(), cat.refresh()]);
    expect(cat.ended).toBe(true);
    const after = await ana0.encrypt(frame('after'));
    expect(mlsKid({ context: ana0.context, senderIndex: 0, epoch: 3n }, 2)).toBe(ana0.kid);
    await expect(cat.decrypt(after)).rejects.toBeInstanceOf(SFrameError);
    // A removed member that kept its last export cannot make the new key either.
    const kept = new SFrameReceiver({ suite: CALL_SFRAME_SUITE });
    await kept.addKey(ana0.kid, await crossEngineBaseKey(catExport));
    await expect(kept.decrypt(after)).rejects.toMatchObject({ code: 'AUTHENTICATION_FAILED' });
    ana.close();
  });

  it('encrypts and decrypts encoded frames as TransformStreams, dropping what fails', async () => {
    const ana = await keysOf(group, 0);
    const ben = await keysOf(group, 1);
    const encryptor = await ana.createEncryptor();
    const buffer = (text: string) => frame(text).buffer;
    const sent: { data: ArrayBuffer }[] = [];
    await new ReadableStream<{ data: ArrayBuffer }>({
      start(controller) {
        for (const text of ['key frame', 'delta']) controller.enqueue({ data: buffer(text) });
        controller.close();
      },
    })
      .pipeThrough(createEncryptTransform(encryptor))
      .pipeTo(new WritableStream({ write: (encoded) => void sent.push(encoded) }));
    expect(sent).toHaveLength(2);
    expect(new Uint8Array(sent[0]?.data ?? new ArrayBuffer(0))).not.toEqual(frame('key frame'));
    const errors: unknown[] = [];
    const senders: string[] = [];
    const received: string[] = [];
    const tampered = new Uint8Array(sent[1]?.data ?? new ArrayBuffer(0)).slice();
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    await new ReadableStream<{ data: ArrayBuffer }>({
      start(controller) {
        for (const encoded of [...sent, { data: tampered.buffer }, { data: buffer('clear') }]) {
          controller.enqueue(encoded);
        }
        controller.close();
      },
    })
      .pipeThrough(
        createDecryptTransform(ben, {
          onError: (error) => errors.push(error),
          onFrame: (decrypted) => senders.push(decrypted.sender.identity),
        }),
      )
      .pipeTo(
        new WritableStream({
          write: (decoded) => void received.push(new TextDecoder().decode(decoded.data)),
        }),
      );
    expect(received).toEqual(['key frame', 'delta']);
    expect(senders).toEqual([identity(1), identity(1)]);
    expect(errors).toHaveLength(2);
    expect(errors.every((error) => error instanceof SFrameError)).toBe(true);
    ana.close();
    ben.close();
  });

  it('leaves the VP8 payload header in the clear, authenticated: a changed header fails', async () => {
    const ana = await keysOf(group, 0);
    const ben = await keysOf(group, 1);
    const encryptor = await ana.createEncryptor();
    const key = { type: 'key', data: frame('0123456789 picture of a key frame').buffer };
    const delta = { type: 'delta', data: frame('abc rest of a delta frame').buffer };
    const audio = { data: frame('opus packet').buffer };
    const sent: { type?: string; data: ArrayBuffer }[] = [];
    await new ReadableStream<{ type?: string; data: ArrayBuffer }>({
      start(controller) {
        for (const encoded of [key, delta, audio]) controller.enqueue(encoded);
        controller.close();
      },
    })
      .pipeThrough(createEncryptTransform(encryptor, { clearBytes: vp8ClearBytes }))
      .pipeTo(new WritableStream({ write: (encoded) => void sent.push(encoded) }));
    const [sentKey, sentDelta, sentAudio] = sent.map((encoded) => new Uint8Array(encoded.data));
    expect(new TextDecoder().decode(sentKey?.slice(0, 10))).toBe('0123456789');
    expect(new TextDecoder().decode(sentKey)).not.toContain('picture');
    expect(new TextDecoder().decode(sentDelta?.slice(0, 3))).toBe('abc');
    expect(new TextDecoder().decode(sentAudio)).not.toContain('opus');
    const tampered = { type: 'delta', data: (sentDelta ?? new Uint8Array(0)).slice().buffer };
    const header = new Uint8Array(tampered.data);
    header[0] = (header[0] ?? 0) ^ 1;
    const received: string[] = [];
    const errors: unknown[] = [];
    await new ReadableStream<{ type?: string; data: ArrayBuffer }>({
      start(controller) {
        for (const encoded of [tampered, ...sent]) controller.enqueue(encoded);
        controller.close();
      },
    })
      .pipeThrough(
        createDecryptTransform(ben, {
          clearBytes: vp8ClearBytes,
          onError: (error) => errors.push(error),
        }),
      )
      .pipeTo(
        new WritableStream({
          write: (decoded) => void received.push(new TextDecoder().decode(decoded.data)),
        }),
      );
    expect(received).toEqual([
      '0123456789 picture of a key frame',
      'abc rest of a delta frame',
      'opus packet',
    ]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'AUTHENTICATION_FAILED' });
    ana.close();
    ben.close();
  });
});
