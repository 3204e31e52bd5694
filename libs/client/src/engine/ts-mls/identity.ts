/**
 * Who sits where in a ts-mls group: Parley identities are the basic credentials of the leaves.
 * What an identity means (user, device, domain) is the SDK's and the server's business; the
 * engine only hands the strings out.
 */
import type { Credential, RatchetTree } from 'ts-mls';

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** The identity of a basic credential; `undefined` for other kinds or identities not UTF-8. */
export function basicIdentity(credential: Credential): string | undefined {
  if (credential.credentialType !== 'basic') return undefined;
  try {
    return utf8Decoder.decode(credential.identity);
  } catch {
    return undefined;
  }
}

/** The occupied leaves of a tree with a basic-credential identity, in leaf order. */
export function leafIdentities(tree: RatchetTree): { leafIndex: number; identity: string }[] {
  const out: { leafIndex: number; identity: string }[] = [];
  // Leaves sit at even node indices of the array-encoded tree (RFC 9420 §4.1).
  for (let node = 0; node < tree.length; node += 2) {
    const entry = tree[node];
    if (entry?.nodeType !== 'leaf') continue;
    const identity = basicIdentity(entry.leaf.credential);
    if (identity !== undefined) out.push({ leafIndex: node / 2, identity });
  }
  return out;
}
