import { randomBytes } from 'node:crypto';

/**
 * A new device id: 16 random hex digits, the first never 0. OpenMLS-based clients (core-crypto)
 * print the device part of a client id without leading zeros, so an id starting with 0 could
 * not be represented there.
 */
export function newDeviceId(): string {
  const bytes = randomBytes(8);
  bytes[0] = ((bytes[0] ?? 0) % 0xf0) + 0x10;
  return bytes.toString('hex');
}
