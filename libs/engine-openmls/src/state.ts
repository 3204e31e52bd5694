/**
 * The engine's saved state: a copy of its core-crypto store (encrypted SQLite pages) with the
 * store's key, and the few things the engine keeps beside core-crypto. It holds secrets (the
 * store key, plaintexts of own messages not yet echoed); the SDK encrypts it at rest.
 *
 * Layout: the 8 bytes "PLYOMLS\x01", a 32-bit big-endian length, that many bytes of UTF-8 JSON
 * (the header), then the data of the store's blocks back to back, in header order.
 */
import { fromBase64, toBase64 } from '@parley/protocol';
import type { StoreBlock } from './store.js';

/** What the engine remembers of a message it sent, to recognise its echo in the log. */
export type OwnMessage =
  { kind: 'commit'; epoch: bigint } | { kind: 'application'; plaintext: Uint8Array };

/** Everything {@link OpenMlsEngineFactory.restore} needs. */
export interface EngineState {
  identity: string;
  ciphersuite: number;
  keyPackageLifetimeSeconds: number;
  /** Location of the core-crypto database this state was copied from. */
  path: string;
  /** The database's 32-byte encryption key. */
  key: Uint8Array;
  /** Own messages by hex SHA-256 of their bytes, oldest first. */
  own: Map<string, OwnMessage>;
  /** Hex SHA-256 of own commits discarded after `send` failed, oldest first. */
  lost: string[];
  /** Groups (hex id) a commit removed this device from, with the epoch that commit started. */
  removed: Map<string, bigint>;
  blocks: StoreBlock[];
}

const MAGIC = new TextEncoder().encode('PLYOMLS\x01');

interface Header {
  identity: string;
  ciphersuite: number;
  keyPackageLifetimeSeconds: number;
  path: string;
  key: string;
  own: [string, 'commit' | 'application', string][];
  lost: string[];
  removed: [string, string][];
  blocks: [number, number][];
}

/** Serialises a state. */
export function encodeState(state: EngineState): Uint8Array {
  const header: Header = {
    identity: state.identity,
    ciphersuite: state.ciphersuite,
    keyPackageLifetimeSeconds: state.keyPackageLifetimeSeconds,
    path: state.path,
    key: toBase64(state.key),
    own: [...state.own].map(([digest, message]) =>
      message.kind === 'commit'
        ? [digest, 'commit', message.epoch.toString()]
        : [digest, 'application', toBase64(message.plaintext)],
    ),
    lost: state.lost,
    removed: [...state.removed].map(([group, epoch]) => [group, epoch.toString()]),
    blocks: state.blocks.map((block) => [block.offset, block.data.length]),
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const dataLength = state.blocks.reduce((sum, block) => sum + block.data.length, 0);
  const out = new Uint8Array(MAGIC.length + 4 + json.length + dataLength);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(MAGIC.length, json.length);
  out.set(json, MAGIC.length + 4);
  let at = MAGIC.length + 4 + json.length;
  for (const block of state.blocks) {
    out.set(block.data, at);
    at += block.data.length;
  }
  return out;
}

function isHeader(value: unknown): value is Header {
  if (typeof value !== 'object' || value === null) return false;
  const header = value as Record<string, unknown>;
  return (
    typeof header.identity === 'string' &&
    typeof header.ciphersuite === 'number' &&
    typeof header.keyPackageLifetimeSeconds === 'number' &&
    typeof header.path === 'string' &&
    typeof header.key === 'string' &&
    Array.isArray(header.own) &&
    header.own.every(
      (entry: unknown) =>
        Array.isArray(entry) &&
        entry.length === 3 &&
        typeof entry[0] === 'string' &&
        (entry[1] === 'commit' || entry[1] === 'application') &&
        typeof entry[2] === 'string',
    ) &&
    Array.isArray(header.lost) &&
    header.lost.every((entry: unknown) => typeof entry === 'string') &&
    Array.isArray(header.removed) &&
    header.removed.every(
      (entry: unknown) =>
        Array.isArray(entry) &&
        entry.length === 2 &&
        typeof entry[0] === 'string' &&
        typeof entry[1] === 'string',
    ) &&
    Array.isArray(header.blocks) &&
    header.blocks.every(
      (entry: unknown) =>
        Array.isArray(entry) &&
        entry.length === 2 &&
        Number.isSafeInteger(entry[0]) &&
        Number.isSafeInteger(entry[1]),
    )
  );
}

/** Parses a state; throws `Error` when it is not one. */
export function decodeState(bytes: Uint8Array): EngineState {
  if (bytes.length < MAGIC.length + 4 || !MAGIC.every((byte, i) => bytes[i] === byte)) {
    throw new Error('not an OpenMLS engine state');
  }
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(MAGIC.length);
  const jsonEnd = MAGIC.length + 4 + jsonLength;
  if (jsonEnd > bytes.length) throw new Error('truncated state');
  const header: unknown = JSON.parse(
    new TextDecoder().decode(bytes.subarray(MAGIC.length + 4, jsonEnd)),
  );
  if (!isHeader(header)) throw new Error('malformed state header');
  let at = jsonEnd;
  const blocks = header.blocks.map(([offset, length]) => {
    if (at + length > bytes.length) throw new Error('truncated state');
    const data = bytes.slice(at, at + length);
    at += length;
    return { offset, data };
  });
  if (at !== bytes.length) throw new Error('trailing bytes after state');
  const key = fromBase64(header.key);
  if (key.length !== 32) throw new Error('store key must be 32 bytes');
  return {
    identity: header.identity,
    ciphersuite: header.ciphersuite,
    keyPackageLifetimeSeconds: header.keyPackageLifetimeSeconds,
    path: header.path,
    key,
    own: new Map(
      header.own.map(([digest, kind, value]): [string, OwnMessage] =>
        kind === 'commit'
          ? [digest, { kind, epoch: BigInt(value) }]
          : [digest, { kind, plaintext: fromBase64(value) }],
      ),
    ),
    lost: header.lost,
    removed: new Map(header.removed.map(([group, epoch]) => [group, BigInt(epoch)])),
    blocks,
  };
}
