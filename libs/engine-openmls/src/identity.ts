/**
 * Parley identities as core-crypto client ids. core-crypto builds a client id from a UUID, a
 * 64-bit device id and a domain, and writes the device id in hex *without leading zeros*; a
 * Parley identity (parsed by @parley/protocol, the same rules as the server's) whose device id
 * starts with 0 cannot be represented, and is refused rather than silently changed (the server
 * would refuse the key packages).
 */
import { parseIdentity } from '@parley/protocol';
import type { ClientId } from '@wireapp/core-crypto/browser';
import type { CoreCryptoRuntime } from './core-crypto.js';
import { fail } from './errors.js';

const utf8Decoder = new TextDecoder();

/** The Parley identity of a core-crypto client id (its UTF-8 bytes). */
export function identityOf(clientId: ClientId): string {
  return utf8Decoder.decode(clientId.copyBytes());
}

/** The core-crypto client id of a Parley identity; UNSUPPORTED_IDENTITY if it has none. */
export function clientIdOf(runtime: CoreCryptoRuntime, identity: string): ClientId {
  const { api } = runtime;
  const parsed = parseIdentity(identity);
  if (parsed === null) {
    throw fail('UNSUPPORTED_IDENTITY', 'the identity is not <uuid>:<hex device id>@<domain>');
  }
  let clientId: ClientId;
  try {
    clientId = new api.ClientId(
      new api.Uuid(parsed.userId),
      api.DeviceId.fromHexString(parsed.deviceId),
      parsed.domain,
    );
  } catch (error) {
    throw fail('UNSUPPORTED_IDENTITY', 'core-crypto refuses the identity', error);
  }
  if (identityOf(clientId) !== identity) {
    throw fail(
      'UNSUPPORTED_IDENTITY',
      `core-crypto would spell this identity ${identityOf(clientId)} (it drops leading zeros ` +
        'of the device id)',
    );
  }
  return clientId;
}
