import { LAST_RESORT_EXTENSION_TYPE, formatIdentity, toHex } from '@parley/protocol';
import { describe, expect, it } from 'vitest';
import {
  decodeMlsMessage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  type CiphersuiteName,
  type KeyPackage,
} from 'ts-mls';
import { encodeKeyPackageTBS, verifyKeyPackage } from 'ts-mls/keyPackage.js';
import { verifyLeafNodeSignatureKeyPackage } from 'ts-mls/leafNode.js';
import {
  DEFAULT_CIPHERSUITE,
  MlsMember,
  decodeKeyPackageMessage,
  keyPackageRef,
  tamperSignature,
} from './mls-member.js';

const domain = 'parley.test';
const alice = formatIdentity({
  userId: '2f1c3c1e-3b0a-4c55-9d0e-6a8f7e5b4c3d',
  deviceId: 'a1b2c3d4e5f60718',
  domain,
});
const bob = formatIdentity({
  userId: '7d9e2a4b-1f3c-4e8d-a0b1-c2d3e4f5a6b7',
  deviceId: '1f0e0d0c0b0a0908',
  domain,
});
const carol = formatIdentity({
  userId: 'c0ffee00-1234-4abc-8def-0123456789ab',
  deviceId: 'deadbeefcafe0001',
  domain,
});

const utf8 = new TextDecoder();
const nowSeconds = (): bigint => BigInt(Math.floor(Date.now() / 1000));

async function signaturesOf(kp: KeyPackage): Promise<{ outer: boolean; leaf: boolean }> {
  const cs = await getCiphersuiteImpl(getCiphersuiteFromName(kp.cipherSuite));
  return {
    outer: await verifyKeyPackage(kp, cs.signature),
    leaf: await verifyLeafNodeSignatureKeyPackage(kp.leafNode, cs.signature),
  };
}

function identityOf(kp: KeyPackage): string {
  const credential = kp.leafNode.credential;
  if (credential.credentialType !== 'basic') throw new Error('expected a basic credential');
  return utf8.decode(credential.identity);
}

describe('MlsMember key packages', () => {
  it('encodes each key package as an MLSMessage with the device identity and key', async () => {
    const member = await MlsMember.create(alice);
    const kps = await member.keyPackages(3);
    expect(kps).toHaveLength(3);
    const initKeys = new Set<string>();
    for (const bytes of kps) {
      const message = decodeMlsMessage(bytes, 0);
      expect(message?.[1]).toBe(bytes.length);
      expect(message?.[0].version).toBe('mls10');
      expect(message?.[0].wireformat).toBe('mls_key_package');
      const kp = decodeKeyPackageMessage(bytes);
      expect(kp.cipherSuite).toBe(DEFAULT_CIPHERSUITE);
      expect(identityOf(kp)).toBe(alice);
      expect(kp.leafNode.signaturePublicKey).toEqual(member.signaturePublicKey);
      expect(kp.extensions).toEqual([]);
      expect(await signaturesOf(kp)).toEqual({ outer: true, leaf: true });
      initKeys.add(toHex(kp.initKey));
    }
    expect(initKeys.size).toBe(3);
    expect(member.heldKeyPackages).toBe(3);
  });

  it('sets the default lifetime to now − 1 h … now + 30 days', async () => {
    const member = await MlsMember.create(alice);
    const before = nowSeconds();
    const [bytes] = await member.keyPackages(1);
    const after = nowSeconds();
    const leaf = decodeKeyPackageMessage(bytes ?? new Uint8Array()).leafNode;
    expect(leaf.lifetime.notBefore).toBeGreaterThanOrEqual(before - 3600n);
    expect(leaf.lifetime.notBefore).toBeLessThanOrEqual(after - 3600n);
    expect(leaf.lifetime.notAfter).toBeGreaterThanOrEqual(before + 30n * 86400n);
    expect(leaf.lifetime.notAfter).toBeLessThanOrEqual(after + 30n * 86400n);
  });

  it('declares fixed capabilities, without random GREASE values', async () => {
    const member = await MlsMember.create(alice);
    for (const bytes of await member.keyPackages(5)) {
      expect(decodeKeyPackageMessage(bytes).leafNode.capabilities).toEqual({
        versions: ['mls10'],
        ciphersuites: [DEFAULT_CIPHERSUITE],
        extensions: [LAST_RESORT_EXTENSION_TYPE],
        proposals: [],
        credentials: ['basic'],
      });
    }
  });

  it('marks the last-resort key package with an empty last_resort KeyPackage extension', async () => {
    const member = await MlsMember.create(alice);
    const kp = decodeKeyPackageMessage(await member.lastResortKeyPackage());
    expect(kp.extensions).toEqual([
      { extensionType: LAST_RESORT_EXTENSION_TYPE, extensionData: new Uint8Array() },
    ]);
    expect(kp.leafNode.extensions).toEqual([]);
    expect(kp.leafNode.capabilities.extensions).toContain(LAST_RESORT_EXTENSION_TYPE);
    expect(kp.leafNode.signaturePublicKey).toEqual(member.signaturePublicKey);
    expect(await signaturesOf(kp)).toEqual({ outer: true, leaf: true });
  });

  it('makes a validly signed expired key package', async () => {
    const member = await MlsMember.create(alice);
    const notBefore = new Date(Date.now() - 2 * 86_400_000);
    const notAfter = new Date(Date.now() - 86_400_000);
    const [bytes] = await member.keyPackages(1, { notBefore, notAfter });
    const kp = decodeKeyPackageMessage(bytes ?? new Uint8Array());
    expect(kp.leafNode.lifetime.notAfter).toBeLessThan(nowSeconds());
    expect(kp.leafNode.lifetime.notAfter).toBe(BigInt(Math.floor(notAfter.getTime() / 1000)));
    expect(await signaturesOf(kp)).toEqual({ outer: true, leaf: true });
  });

  it('impersonates another identity with the member’s own key', async () => {
    const member = await MlsMember.create(alice);
    const [bytes] = await member.keyPackages(1, { identity: bob });
    const kp = decodeKeyPackageMessage(bytes ?? new Uint8Array());
    expect(identityOf(kp)).toBe(bob);
    expect(kp.leafNode.signaturePublicKey).toEqual(member.signaturePublicKey);
    expect(await signaturesOf(kp)).toEqual({ outer: true, leaf: true });
  });

  it('signs with another key pair when asked', async () => {
    const member = await MlsMember.create(alice);
    const other = await member.newSignatureKeyPair();
    const [bytes] = await member.keyPackages(1, { signatureKeyPair: other });
    const kp = decodeKeyPackageMessage(bytes ?? new Uint8Array());
    expect(identityOf(kp)).toBe(alice);
    expect(kp.leafNode.signaturePublicKey).toEqual(other.publicKey);
    expect(kp.leafNode.signaturePublicKey).not.toEqual(member.signaturePublicKey);
    expect(await signaturesOf(kp)).toEqual({ outer: true, leaf: true });
  });

  it.each<[CiphersuiteName, number]>([
    ['MLS_256_DHKEMP384_AES256GCM_SHA384_P384', 7],
    ['MLS_256_DHKEMP521_AES256GCM_SHA512_P521', 5],
  ])('makes key packages in %s (id %i)', async (ciphersuite, id) => {
    const member = await MlsMember.create(alice, { ciphersuite });
    const bytes = await member.lastResortKeyPackage();
    const kp = decodeKeyPackageMessage(bytes);
    expect(kp.cipherSuite).toBe(ciphersuite);
    // MLSMessage: version (2 bytes), wire format (2), then KeyPackage: version (2), cipher_suite (2).
    expect((bytes[6] ?? 0) * 256 + (bytes[7] ?? 0)).toBe(id);
    expect(await signaturesOf(kp)).toEqual({ outer: true, leaf: true });
  });

  it('tamperSignature changes only the KeyPackage signature', async () => {
    const member = await MlsMember.create(alice);
    const [bytes = new Uint8Array()] = await member.keyPackages(1);
    const tampered = tamperSignature(bytes);
    expect(tampered).toHaveLength(bytes.length);
    const differing = [...bytes.keys()].filter((i) => bytes[i] !== tampered[i]);
    expect(differing).toEqual([bytes.length - 1]);
    const original = decodeKeyPackageMessage(bytes);
    const broken = decodeKeyPackageMessage(tampered);
    expect(encodeKeyPackageTBS(broken)).toEqual(encodeKeyPackageTBS(original));
    expect(broken.signature).not.toEqual(original.signature);
    expect(await signaturesOf(broken)).toEqual({ outer: false, leaf: true });
  });

  it('breakLeafNodeSignature breaks only the leaf-node signature', async () => {
    const member = await MlsMember.create(alice);
    const [bytes] = await member.keyPackages(1, { breakLeafNodeSignature: true });
    const kp = decodeKeyPackageMessage(bytes ?? new Uint8Array());
    expect(identityOf(kp)).toBe(alice);
    expect(await signaturesOf(kp)).toEqual({ outer: true, leaf: false });
  });
});

describe('MlsGroup', () => {
  const groupId = new TextEncoder().encode('conversation-1');

  it('runs a three-member group: add, welcome, messages, remove', async () => {
    const [a, b, c] = await Promise.all([alice, bob, carol].map((id) => MlsMember.create(id)));
    if (a === undefined || b === undefined || c === undefined) throw new Error('unreachable');
    const [bobKp = new Uint8Array()] = await b.keyPackages(1);
    const carolLastResort = await c.lastResortKeyPackage();

    const ga = await a.createGroup(groupId);
    expect(ga.epoch).toBe(0n);
    const add = await ga.addMembers([bobKp, carolLastResort]);
    expect(add.epoch).toBe(0n);
    expect(ga.epoch).toBe(0n);
    expect(ga.hasPendingCommit).toBe(true);

    const commit = decodeMlsMessage(add.commit, 0)?.[0];
    expect(commit?.wireformat).toBe('mls_public_message');
    const groupInfo = decodeMlsMessage(add.groupInfo, 0)?.[0];
    if (groupInfo?.wireformat !== 'mls_group_info') throw new Error('expected a GroupInfo');
    expect(groupInfo.groupInfo.groupContext.epoch).toBe(1n);
    expect(groupInfo.groupInfo.extensions.map((e) => e.extensionType)).toEqual(
      expect.arrayContaining(['ratchet_tree', 'external_pub']),
    );
    const welcome = decodeMlsMessage(add.welcome ?? new Uint8Array(), 0)?.[0];
    if (welcome?.wireformat !== 'mls_welcome') throw new Error('expected a Welcome');
    const refs = welcome.welcome.secrets.map((s) => toHex(s.newMember));
    expect(refs).toEqual([
      toHex(await keyPackageRef(bobKp)),
      toHex(await keyPackageRef(carolLastResort)),
    ]);

    // The server echoes the accepted commit in the log; reading it confirms the pending state.
    expect(await ga.processMessage(add.commit)).toEqual({ kind: 'commit', epoch: 1n, own: true });
    expect(ga.epoch).toBe(1n);

    const gb = await b.joinFromWelcome(add.welcome ?? new Uint8Array());
    const gc = await c.joinFromWelcome(add.welcome ?? new Uint8Array());
    expect([gb.epoch, gc.epoch]).toEqual([1n, 1n]);
    expect(gb.members()).toEqual([alice, bob, carol]);
    expect(b.heldKeyPackages).toBe(0);
    expect(c.heldKeyPackages).toBe(1);

    const hello = await gb.encrypt('hello from bob');
    expect(decodeMlsMessage(hello, 0)?.[0].wireformat).toBe('mls_private_message');
    for (const g of [ga, gc]) {
      const got = await g.processMessage(hello);
      if (got.kind !== 'application') throw new Error('expected an application message');
      expect(utf8.decode(got.plaintext)).toBe('hello from bob');
      expect(got.own).toBe(false);
    }
    expect(await gb.processMessage(hello)).toMatchObject({ kind: 'application', own: true });

    const remove = await gb.removeMembers([carol]);
    expect(remove.welcome).toBeUndefined();
    gb.confirmCommit();
    expect(await ga.processMessage(remove.commit)).toEqual({
      kind: 'commit',
      epoch: 2n,
      own: false,
    });
    expect(await gc.processMessage(remove.commit)).toMatchObject({ kind: 'commit' });
    expect(gc.active).toBe(false);
    expect(ga.members()).toEqual([alice, bob]);

    const reply = await ga.encrypt('carol is gone');
    const got = await gb.processMessage(reply);
    expect(got.kind === 'application' && utf8.decode(got.plaintext)).toBe('carol is gone');
    await expect(gc.processMessage(reply)).rejects.toThrow();
  });

  it('lets the loser of a commit race discard its commit and follow the winner', async () => {
    const [a, b] = await Promise.all([MlsMember.create(alice), MlsMember.create(bob)]);
    const c = await MlsMember.create(carol);
    const ga = await a.createGroup(groupId);
    const add = await ga.addMembers(await b.keyPackages(1));
    ga.confirmCommit();
    const gb = await b.joinFromWelcome(add.welcome ?? new Uint8Array());

    const [carolA = new Uint8Array(), carolB = new Uint8Array()] = await c.keyPackages(2);
    const fromA = await ga.addMembers([carolA]);
    const fromB = await gb.addMembers([carolB]);
    expect([fromA.epoch, fromB.epoch]).toEqual([1n, 1n]);

    // The server accepts A's commit; B is told STALE_EPOCH and reads A's commit from the log.
    ga.confirmCommit();
    expect(await gb.processMessage(fromA.commit)).toEqual({
      kind: 'commit',
      epoch: 2n,
      own: false,
    });
    expect(gb.hasPendingCommit).toBe(false);
    const gc = await c.joinFromWelcome(fromA.welcome ?? new Uint8Array());
    expect(gc.members()).toEqual([alice, bob, carol]);

    const message = await gc.encrypt(new Uint8Array([1, 2, 3]));
    for (const g of [ga, gb]) {
      expect(await g.processMessage(message)).toEqual({
        kind: 'application',
        plaintext: new Uint8Array([1, 2, 3]),
        own: false,
      });
    }
  });
});
