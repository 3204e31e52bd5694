/**
 * The MLS basic-credential identity of a device: `<userId>:<deviceId>@<domain>`. The server
 * writes it into every key package it accepts and every roster it checks; clients read the
 * sender and the members of a group from it. Both sides parse it here, with one set of rules.
 */

/** The parts of a device identity. */
export interface DeviceIdentity {
  /** The user's id: a UUID in canonical lower-case form (as PostgreSQL prints a `uuid`). */
  userId: string;
  /** The device's id: exactly 16 lower-case hex digits (64 bits). */
  deviceId: string;
  /** The server's domain (`PARLEY_DOMAIN`): a lower-case DNS name. */
  domain: string;
}

// Canonical forms only: the server writes identities from its own rows, so a second spelling of
// one identity (upper case, a short device id) can only come from a client that made it up.
const USER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DEVICE_ID = /^[0-9a-f]{16}$/;
// RFC 1123 labels of 1–63 letters, digits or inner dashes; at most 253 characters in all.
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const MAX_DOMAIN_LENGTH = 253;

// Invalid UTF-8 is not an identity, rather than one with replacement characters in it.
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Whether a string is a user id as identities carry it (canonical lower-case UUID). */
export function isIdentityUserId(value: string): boolean {
  return USER_ID.test(value);
}

/** Whether a string is a device id as identities carry it (16 lower-case hex digits). */
export function isDeviceId(value: string): boolean {
  return DEVICE_ID.test(value);
}

/** Whether a string is a domain as identities carry it (a lower-case DNS name). */
export function isIdentityDomain(value: string): boolean {
  return value.length <= MAX_DOMAIN_LENGTH && value.split('.').every((label) => LABEL.test(label));
}

/**
 * The identity of a device. Throws `TypeError` when a part breaks the rules: identities are made
 * from the server's own rows or from what it returned, so a bad part is a programming error.
 */
export function formatIdentity(identity: DeviceIdentity): string {
  const { userId, deviceId, domain } = identity;
  if (!isIdentityUserId(userId)) throw new TypeError('userId must be a lower-case UUID');
  if (!isDeviceId(deviceId)) throw new TypeError('deviceId must be 16 lower-case hex digits');
  if (!isIdentityDomain(domain)) throw new TypeError('domain must be a lower-case DNS name');
  return `${userId}:${deviceId}@${domain}`;
}

/**
 * The parts of an identity (a string, or its UTF-8 bytes as an MLS credential holds them), or
 * `null` when it is not exactly of the form {@link formatIdentity} writes. Whether the domain is
 * the expected one is the caller's decision.
 */
export function parseIdentity(identity: string | Uint8Array): DeviceIdentity | null {
  let text: string;
  if (typeof identity === 'string') {
    text = identity;
  } else {
    try {
      text = utf8.decode(identity);
    } catch {
      return null;
    }
  }
  const colon = text.indexOf(':');
  const at = text.indexOf('@');
  if (colon < 0 || at < colon) return null;
  const userId = text.slice(0, colon);
  const deviceId = text.slice(colon + 1, at);
  const domain = text.slice(at + 1);
  if (!isIdentityUserId(userId) || !isDeviceId(deviceId) || !isIdentityDomain(domain)) return null;
  return { userId, deviceId, domain };
}
