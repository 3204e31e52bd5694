import { describe, expect, it } from 'vitest';
import { decoyHash, hashPassword, verifyPassword } from './password-hasher.js';

const PASSWORD = 'correct horse battery staple';
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

describe('password hasher', () => {
  it('hashes as scrypt$N$r$p$salt$hash with RFC 7914 interactive parameters', async () => {
    const parts = (await hashPassword(PASSWORD)).split('$');
    expect(parts).toHaveLength(6);
    const [scheme, n, r, p, salt = '', hash = ''] = parts;
    expect([scheme, n, r, p]).toEqual(['scrypt', String(2 ** 15), '8', '1']);
    expect(salt).toMatch(BASE64);
    expect(hash).toMatch(BASE64);
    expect(Buffer.from(salt, 'base64')).toHaveLength(16);
    expect(Buffer.from(hash, 'base64')).toHaveLength(32);
  });

  it('verifies the right password and rejects wrong ones', async () => {
    const stored = await hashPassword(PASSWORD);
    expect(await verifyPassword(PASSWORD, stored)).toBe(true);
    expect(await verifyPassword('correct horse battery stapler', stored)).toBe(false);
    expect(await verifyPassword(PASSWORD.toUpperCase(), stored)).toBe(false);
    expect(await verifyPassword('', stored)).toBe(false);
  });

  it('handles passwords outside ASCII', async () => {
    const password = 'pässwörd-🔑-パスワード';
    const stored = await hashPassword(password);
    expect(await verifyPassword(password, stored)).toBe(true);
    expect(await verifyPassword('passwörd-🔑-パスワード', stored)).toBe(false);
  });

  it('salts every hash, so two hashes of one password differ and both verify', async () => {
    const [first, second] = await Promise.all([hashPassword(PASSWORD), hashPassword(PASSWORD)]);
    expect(first).not.toBe(second);
    expect(first.split('$')[4]).not.toBe(second.split('$')[4]);
    expect(await verifyPassword(PASSWORD, first)).toBe(true);
    expect(await verifyPassword(PASSWORD, second)).toBe(true);
  });

  it('rejects a hash whose salt or key was changed', async () => {
    const parts = (await hashPassword(PASSWORD)).split('$');
    const otherSalt = [...parts.slice(0, 4), Buffer.alloc(16).toString('base64'), parts[5]].join(
      '$',
    );
    const otherKey = [...parts.slice(0, 5), Buffer.alloc(32).toString('base64')].join('$');
    expect(await verifyPassword(PASSWORD, otherSalt)).toBe(false);
    expect(await verifyPassword(PASSWORD, otherKey)).toBe(false);
  });

  it.each([
    ['an empty string', ''],
    ['another scheme', 'bcrypt$2b$10$abcdefghijklmnopqrstuv'],
    ['missing parts', 'scrypt$32768$8$1$c2FsdA=='],
    ['an empty key', 'scrypt$32768$8$1$c2FsdA==$'],
    ['a non-numeric N', 'scrypt$abc$8$1$c2FsdA==$a2V5'],
    ['an N that is not a power of two', 'scrypt$1000$8$1$c2FsdA==$a2V5'],
    ['a zero r', 'scrypt$32768$0$1$c2FsdA==$a2V5'],
    ['a negative p', 'scrypt$32768$8$-1$c2FsdA==$a2V5'],
    ['empty parameters', 'scrypt$$$$c2FsdA==$a2V5'],
    ['parameters over the memory limit', 'scrypt$1048576$8$1$c2FsdA==$a2V5'],
    ['extra parts', 'scrypt$32768$8$1$c2FsdA==$a2V5$more'],
  ])('answers false, without throwing, for a malformed stored hash: %s', async (_case, stored) => {
    await expect(verifyPassword(PASSWORD, stored)).resolves.toBe(false);
  });

  it('has a decoy hash that is well-formed, stable and matches no password', async () => {
    const decoy = await decoyHash();
    expect(decoy).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(await decoyHash()).toBe(decoy);
    for (const password of ['', PASSWORD, 'password', decoy, decoy.split('$')[4] ?? '']) {
      expect(await verifyPassword(password, decoy)).toBe(false);
    }
  });
});
