/**
 * The external_pub GroupInfo extension as RFC 9420 §12.4.3.2 writes it, and a way for ts-mls to
 * read it. Its extension_data is the struct `ExternalPub { HPKEPublicKey external_pub; }`, the
 * key with its variable-length prefix; ts-mls 1.6.4 writes and reads the bare key instead, so
 * OpenMLS could not join a ts-mls group from its GroupInfo, nor ts-mls an OpenMLS one.
 */
import type { CiphersuiteImpl, ClientState, GroupInfo } from 'ts-mls';
import { varLenDataEncoder } from 'ts-mls/codec/variableLength.js';
import { encode } from 'ts-mls/codec/tlsEncoder.js';
import { createGroupInfo } from 'ts-mls/createCommit.js';
import { ratchetTreeEncoder } from 'ts-mls/ratchetTree.js';

/** The GroupInfo of the state's epoch with an RFC 9420 external_pub and the ratchet tree. */
export async function groupInfoForExternalJoins(
  state: ClientState,
  cs: CiphersuiteImpl,
): Promise<GroupInfo> {
  const externalKeyPair = await cs.hpke.deriveKeyPair(state.keySchedule.externalSecret);
  const externalPub = await cs.hpke.exportPublicKey(externalKeyPair.publicKey);
  return createGroupInfo(
    state.groupContext,
    state.confirmationTag,
    state,
    [
      { extensionType: 'external_pub', extensionData: encode(varLenDataEncoder)(externalPub) },
      {
        extensionType: 'ratchet_tree',
        extensionData: encode(ratchetTreeEncoder)(state.ratchetTree),
      },
    ],
    cs,
  );
}

/**
 * The ciphersuite with an HPKE public-key import that takes the RFC's ExternalPub (the key with
 * its length prefix) as well as the bare key ts-mls 1.6.4 wrote: for joinGroupExternal only,
 * which imports nothing else. The bare key is tried first; only if it is refused is the prefix
 * read and the rest imported, so a valid bare key is never cut.
 */
export function readingRfcExternalPub(cs: CiphersuiteImpl): CiphersuiteImpl {
  const hpke = Object.create(cs.hpke) as CiphersuiteImpl['hpke'];
  hpke.importPublicKey = async (key: Uint8Array) => {
    try {
      return await cs.hpke.importPublicKey(key);
    } catch (error) {
      const inner = unprefixed(key);
      if (inner === null) throw error;
      return cs.hpke.importPublicKey(inner);
    }
  };
  return { ...cs, hpke };
}

/** The bytes of an RFC 9420 §2.1.2 variable-length vector that spans all of `bytes`, or null. */
function unprefixed(bytes: Uint8Array): Uint8Array | null {
  const first = bytes[0];
  if (first === undefined) return null;
  const prefix = first >> 6;
  if (prefix === 3) return null;
  const size = 1 << prefix;
  let length = first & 0x3f;
  for (let i = 1; i < size; i++) length = length * 256 + (bytes[i] ?? 0);
  return bytes.length === size + length ? bytes.subarray(size) : null;
}
