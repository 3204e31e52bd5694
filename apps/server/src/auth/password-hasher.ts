import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

// scrypt parameters from RFC 7914's interactive-login recommendation (N=2^15, r=8, p=1): ~32 MiB, ~50 ms.
const N = 2 ** 15;
const R = 8;
const P = 1;
const KEY_BYTES = 32;
const MAX_MEMORY = 64 * 1024 * 1024;

function derive(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEY_BYTES, { N: n, r, p, maxmem: MAX_MEMORY }, (error, key) => {
      if (error) reject(error);
      else resolve(key);
    });
  });
}

/** Hashes a password as `scrypt$N$r$p$salt$hash` (base64 parts). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, N, R, P);
  return ['scrypt', N, R, P, salt.toString('base64'), key.toString('base64')].join('$');
}

const positiveInteger = (part: string | undefined) =>
  part !== undefined && /^[1-9]\d{0,9}$/.test(part) ? Number(part) : undefined;

/** Checks a password against a stored hash in constant time; a malformed hash matches nothing. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  const [scheme, , , , salt, hash] = parts;
  const [n, r, p] = parts.slice(1, 4).map(positiveInteger);
  if (parts.length !== 6 || scheme !== 'scrypt' || salt === undefined || hash === undefined) {
    return false;
  }
  if (n === undefined || r === undefined || p === undefined) return false;
  const expected = Buffer.from(hash, 'base64');
  if (expected.length === 0) return false;
  let actual: Buffer;
  try {
    actual = await derive(password, Buffer.from(salt, 'base64'), n, r, p);
  } catch {
    // Parameters scrypt refuses (N not a power of two, over the memory limit) mean a corrupt
    // row: the sign-in fails like a wrong password instead of as an internal error.
    return false;
  }
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

// A hash of a random password, so that signing in as an unknown user costs the same time
// as a wrong password and does not reveal which usernames exist.
let decoy: Promise<string> | undefined;
/** A hash that no password matches, for constant-time rejection of unknown users. */
export function decoyHash(): Promise<string> {
  decoy ??= hashPassword(randomBytes(32).toString('base64'));
  return decoy;
}
