/**
 * The saved-state format of the ts-mls engine:
 *
 * "PTMS" u8(version 1), then: identity, u16 ciphersuite, signature public and private key;
 * u32 key packages × (ref, KeyPackage, init private key, HPKE private key, u8 last resort);
 * u32 groups × (GroupState, u32 pending × (digest, GroupState), u32 own × (digest, u8 kind,
 * u64 epoch, plaintext)). Byte strings are u32-length-prefixed; integers are big-endian.
 */
import { bytesEqual, fromHex, toHex } from '@parley/protocol';
import { decodeGroupState, encodeGroupState, type ClientConfig, type ClientState } from 'ts-mls';
// Not re-exported from the package root; reachable through its "./*.js" export map.
import { decodeKeyPackage, encodeKeyPackage } from 'ts-mls/keyPackage.js';
import { TsMlsEngineError } from './errors.js';
import type { HeldKeyPackage, SignatureKeyPair } from './key-packages.js';

/** What the engine sent, so that the log's echo of it needs no decryption. */
export type OwnMessage =
  { kind: 'commit'; epoch: bigint } | { kind: 'application'; epoch: bigint; plaintext: Uint8Array };

/** One group as saved: the confirmed state, own commits awaiting a verdict, own messages. */
export interface SavedGroup {
  state: ClientState;
  /** States of own commits made from `state`, by hex digest of the commit. */
  pending: Map<string, ClientState>;
  /** Own messages by hex digest, oldest first. */
  own: Map<string, OwnMessage>;
}

/** Everything a ts-mls engine saves. */
export interface SavedEngine {
  identity: string;
  ciphersuite: number;
  signatureKeyPair: SignatureKeyPair;
  /** Held key packages by hex KeyPackageRef. */
  keyPackages: Map<string, HeldKeyPackage>;
  groups: SavedGroup[];
}

const STATE_MAGIC = new Uint8Array([0x50, 0x54, 0x4d, 0x53]); // "PTMS"
const STATE_VERSION = 1;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** The saved form of an engine. */
export function encodeEngineState(saved: SavedEngine): Uint8Array {
  const out = new ByteWriter();
  out.raw(STATE_MAGIC);
  out.u8(STATE_VERSION);
  out.bytes(utf8.encode(saved.identity));
  out.u16(saved.ciphersuite);
  out.bytes(saved.signatureKeyPair.publicKey);
  out.bytes(saved.signatureKeyPair.signKey);
  out.u32(saved.keyPackages.size);
  for (const held of saved.keyPackages.values()) {
    out.bytes(held.ref);
    out.bytes(encodeKeyPackage(held.keyPackage));
    out.bytes(held.privateKeyPackage.initPrivateKey);
    out.bytes(held.privateKeyPackage.hpkePrivateKey);
    out.u8(held.lastResort ? 1 : 0);
  }
  out.u32(saved.groups.length);
  for (const group of saved.groups) {
    out.bytes(encodeGroupState(group.state));
    out.u32(group.pending.size);
    for (const [key, state] of group.pending) {
      out.bytes(fromHex(key));
      out.bytes(encodeGroupState(state));
    }
    out.u32(group.own.size);
    for (const [key, message] of group.own) {
      out.bytes(fromHex(key));
      out.u8(message.kind === 'commit' ? 0 : 1);
      out.u64(message.epoch);
      out.bytes(message.kind === 'application' ? message.plaintext : new Uint8Array());
    }
  }
  return out.finish();
}

/**
 * An engine's saved form read back; group states get `clientConfig` (behaviour, not state: the
 * restoring factory's applies). Throws INVALID_STATE (or ts-mls's own error) when it does not
 * decode.
 */
export function decodeEngineState(bytes: Uint8Array, clientConfig: ClientConfig): SavedEngine {
  const input = new ByteReader(bytes);
  if (!bytesEqual(input.raw(STATE_MAGIC.length), STATE_MAGIC)) {
    throw new TsMlsEngineError('INVALID_STATE', 'not saved ts-mls engine state');
  }
  const version = input.u8();
  if (version !== STATE_VERSION) {
    throw new TsMlsEngineError('INVALID_STATE', `saved state version ${version} is not supported`);
  }
  const identity = utf8Decoder.decode(input.bytes());
  const ciphersuite = input.u16();
  const publicKey = input.bytes();
  const signKey = input.bytes();
  const decodeState = (encoded: Uint8Array): ClientState => {
    const decoded = decodeGroupState(encoded, 0);
    if (decoded?.[1] !== encoded.length) {
      throw new TsMlsEngineError('INVALID_STATE', 'a saved group state does not decode');
    }
    return { ...decoded[0], clientConfig };
  };
  const keyPackages = new Map<string, HeldKeyPackage>();
  for (let i = input.u32(); i > 0; i--) {
    const ref = input.bytes();
    const encoded = input.bytes();
    const keyPackage = decodeKeyPackage(encoded, 0);
    if (keyPackage?.[1] !== encoded.length) {
      throw new TsMlsEngineError('INVALID_STATE', 'a saved key package does not decode');
    }
    const initPrivateKey = input.bytes();
    const hpkePrivateKey = input.bytes();
    const lastResort = input.u8() === 1;
    keyPackages.set(toHex(ref), {
      ref,
      keyPackage: keyPackage[0],
      privateKeyPackage: { initPrivateKey, hpkePrivateKey, signaturePrivateKey: signKey },
      lastResort,
    });
  }
  const groups: SavedGroup[] = [];
  for (let i = input.u32(); i > 0; i--) {
    const group: SavedGroup = {
      state: decodeState(input.bytes()),
      pending: new Map(),
      own: new Map(),
    };
    for (let j = input.u32(); j > 0; j--) {
      const key = toHex(input.bytes());
      group.pending.set(key, decodeState(input.bytes()));
    }
    for (let j = input.u32(); j > 0; j--) {
      const key = toHex(input.bytes());
      const kind = input.u8();
      const epoch = input.u64();
      const plaintext = input.bytes();
      group.own.set(
        key,
        kind === 0 ? { kind: 'commit', epoch } : { kind: 'application', epoch, plaintext },
      );
    }
    groups.push(group);
  }
  input.end();
  return { identity, ciphersuite, signatureKeyPair: { publicKey, signKey }, keyPackages, groups };
}

class ByteWriter {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;

  raw(bytes: Uint8Array): void {
    this.chunks.push(Uint8Array.from(bytes));
    this.size += bytes.length;
  }

  u8(value: number): void {
    this.raw(Uint8Array.of(value));
  }

  u16(value: number): void {
    const out = new Uint8Array(2);
    new DataView(out.buffer).setUint16(0, value);
    this.raw(out);
  }

  u32(value: number): void {
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, value);
    this.raw(out);
  }

  u64(value: bigint): void {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, value);
    this.raw(out);
  }

  bytes(value: Uint8Array): void {
    this.u32(value.length);
    this.raw(value);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }
}

class ByteReader {
  private offset = 0;
  private readonly view: DataView;

  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  private need(length: number): number {
    if (this.offset + length > this.data.length) {
      throw new TsMlsEngineError('INVALID_STATE', 'saved state is truncated');
    }
    const at = this.offset;
    this.offset += length;
    return at;
  }

  raw(length: number): Uint8Array {
    const at = this.need(length);
    return this.data.slice(at, at + length);
  }

  u8(): number {
    return this.view.getUint8(this.need(1));
  }

  u16(): number {
    return this.view.getUint16(this.need(2));
  }

  u32(): number {
    return this.view.getUint32(this.need(4));
  }

  u64(): bigint {
    return this.view.getBigUint64(this.need(8));
  }

  bytes(): Uint8Array {
    return this.raw(this.u32());
  }

  end(): void {
    if (this.offset !== this.data.length) {
      throw new TsMlsEngineError('INVALID_STATE', 'trailing bytes after saved state');
    }
  }
}
