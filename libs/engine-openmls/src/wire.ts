/**
 * The little of the RFC 9420 wire format this engine reads itself: the MLSMessage header and the
 * unencrypted framing of group messages. core-crypto hands out and takes commits, Welcomes,
 * GroupInfos and application messages already as MLSMessage, but key packages bare (§6).
 */

/** RFC 9420 §6 WireFormat values. */
export const WireFormat = {
  publicMessage: 1,
  privateMessage: 2,
  welcome: 3,
  groupInfo: 4,
  keyPackage: 5,
} as const;

/** RFC 9420 §6 ContentType values. */
export const ContentType = { application: 1, proposal: 2, commit: 3 } as const;

const MLS10 = 1;
const HEADER_BYTES = 4;

/** The readable framing of a PublicMessage or PrivateMessage. */
export interface Framing {
  wireFormat: typeof WireFormat.publicMessage | typeof WireFormat.privateMessage;
  groupId: Uint8Array;
  epoch: bigint;
  contentType: number;
}

/** A malformed MLSMessage, or one of another kind than expected. */
export class WireError extends Error {
  override readonly name = 'WireError';
}

/** The wire format of an MLSMessage (after checking that its version is mls10). */
export function wireFormatOf(message: Uint8Array): number {
  if (message.length < HEADER_BYTES) throw new WireError('too short for an MLSMessage');
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  if (view.getUint16(0) !== MLS10) throw new WireError('not an mls10 MLSMessage');
  return view.getUint16(2);
}

/** MLSMessage(key_package) around a bare TLS-serialised KeyPackage, as Parley's API takes it. */
export function wrapKeyPackage(keyPackage: Uint8Array): Uint8Array {
  const message = new Uint8Array(HEADER_BYTES + keyPackage.length);
  const view = new DataView(message.buffer);
  view.setUint16(0, MLS10);
  view.setUint16(2, WireFormat.keyPackage);
  message.set(keyPackage, HEADER_BYTES);
  return message;
}

/** The bare KeyPackage inside an MLSMessage(key_package), as core-crypto's `KeyPackage` takes it. */
export function unwrapKeyPackage(message: Uint8Array): Uint8Array {
  if (wireFormatOf(message) !== WireFormat.keyPackage) {
    throw new WireError('not an MLSMessage(key_package)');
  }
  return message.slice(HEADER_BYTES);
}

class Reader {
  private offset: number;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.offset = HEADER_BYTES;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(count: number): void {
    if (this.offset + count > this.bytes.length) throw new WireError('truncated MLSMessage');
  }

  u8(): number {
    this.need(1);
    return this.view.getUint8(this.offset++);
  }

  u32(): number {
    this.need(4);
    const value = this.view.getUint32(this.offset);
    this.offset += 4;
    return value;
  }

  u64(): bigint {
    this.need(8);
    const value = this.view.getBigUint64(this.offset);
    this.offset += 8;
    return value;
  }

  /** RFC 9420 §2.1.2 variable-length vector. */
  vector(): Uint8Array {
    const first = this.u8();
    const prefix = first >> 6;
    let length = first & 0x3f;
    if (prefix === 3) throw new WireError('invalid variable-length integer');
    const extra = prefix === 0 ? 0 : prefix === 1 ? 1 : 3;
    for (let i = 0; i < extra; i++) length = length * 256 + this.u8();
    this.need(length);
    const value = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
}

/** Group id, epoch and content type of a PublicMessage or PrivateMessage (RFC 9420 §6.2, §6.3). */
export function readFraming(message: Uint8Array): Framing {
  const wireFormat = wireFormatOf(message);
  const reader = new Reader(message);
  if (wireFormat === WireFormat.privateMessage) {
    const groupId = reader.vector();
    const epoch = reader.u64();
    return { wireFormat, groupId: groupId.slice(), epoch, contentType: reader.u8() };
  }
  if (wireFormat !== WireFormat.publicMessage) {
    throw new WireError(`wire format ${wireFormat} is not a group message`);
  }
  const groupId = reader.vector();
  const epoch = reader.u64();
  const senderType = reader.u8();
  // member (1) and external (2) senders carry a 32-bit index; new members (3, 4) nothing.
  if (senderType === 1 || senderType === 2) reader.u32();
  else if (senderType !== 3 && senderType !== 4) throw new WireError('unknown sender type');
  reader.vector();
  return { wireFormat, groupId: groupId.slice(), epoch, contentType: reader.u8() };
}

/** Group id and epoch of an MLSMessage(group_info): the start of its GroupContext (RFC 9420 §8.1). */
export function readGroupInfoHead(message: Uint8Array): { groupId: Uint8Array; epoch: bigint } {
  if (wireFormatOf(message) !== WireFormat.groupInfo) throw new WireError('not a GroupInfo');
  const reader = new Reader(message);
  // GroupContext.version and .cipher_suite, two uint16 each.
  reader.u32();
  const groupId = reader.vector();
  return { groupId: groupId.slice(), epoch: reader.u64() };
}

/** The bare GroupInfo inside an MLSMessage(group_info), as core-crypto's `GroupInfo` takes it. */
export function unwrapGroupInfo(message: Uint8Array): Uint8Array {
  if (wireFormatOf(message) !== WireFormat.groupInfo) throw new WireError('not a GroupInfo');
  return message.slice(HEADER_BYTES);
}
