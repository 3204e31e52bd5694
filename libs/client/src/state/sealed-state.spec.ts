import { describe, expect, it } from 'vitest';
import {
  StateDecryptionError,
  decryptState,
  encryptState,
  keyFromBytes,
  keyFromPassphrase,
  newSalt,
  readSealedStateHeader,
  type StateDecryptionFailure,
} from './sealed-state.js';

// Cheap scrypt for tests; the default (2^17) is exercised once below.
const FAST = { logN: 10, r: 8, p: 1 };
const plain = new TextEncoder().encode('private keys, ratchet trees, and a few messages');

async function failure(promise: Promise<unknown>): Promise<StateDecryptionFailure> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StateDecryptionError);
  return (error as StateDecryptionError).reason;
}

function flip(bytes: Uint8Array, index: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[index] = (out[index] ?? 0) ^ 0x01;
  return out;
}

describe('sealed state with a raw key', () => {
  it('round-trips, with a fresh nonce each time', async () => {
    const key = await keyFromBytes(crypto.getRandomValues(new Uint8Array(32)));
    const a = await encryptState(plain, key);
    const b = await encryptState(plain, key);
    expect(a).not.toEqual(b);
    expect(await decryptState(a, key)).toEqual(plain);
    expect(await decryptState(b, key)).toEqual(plain);
    expect(readSealedStateHeader(a)).toEqual({ version: 1, derivation: { kind: 'raw' } });
    // Magic, version, KDF, nonce length and nonce; ciphertext; tag.
    expect(a.length).toBe(4 + 1 + 1 + 1 + 12 + plain.length + 16);
  });

  it('fails with AUTHENTICATION_FAILED under another key', async () => {
    const key = await keyFromBytes(crypto.getRandomValues(new Uint8Array(32)));
    const other = await keyFromBytes(crypto.getRandomValues(new Uint8Array(32)));
    expect(await failure(decryptState(await encryptState(plain, key), other))).toBe(
      'AUTHENTICATION_FAILED',
    );
  });

  it('refuses keys of the wrong size', async () => {
    await expect(keyFromBytes(new Uint8Array(16))).rejects.toThrow(TypeError);
  });
});

describe('sealed state with a passphrase', () => {
  it('reopens with the passphrase alone: salt and cost are in the header', async () => {
    const salt = newSalt();
    const key = await keyFromPassphrase('correct horse battery staple', salt, FAST);
    const sealed = await encryptState(plain, key);
    expect(readSealedStateHeader(sealed)).toEqual({
      version: 1,
      derivation: { kind: 'scrypt', ...FAST, salt },
    });
    expect(await decryptState(sealed, 'correct horse battery staple')).toEqual(plain);
    expect(await decryptState(sealed, key)).toEqual(plain);
  });

  it('normalises the passphrase (composed and decomposed accents derive the same key)', async () => {
    const key = await keyFromPassphrase('caf\u00e9', newSalt(), FAST);
    const sealed = await encryptState(plain, key);
    expect(await decryptState(sealed, 'cafe\u0301')).toEqual(plain);
  });

  it('fails with a typed error on a wrong passphrase', async () => {
    const sealed = await encryptState(plain, await keyFromPassphrase('right', newSalt(), FAST));
    expect(await failure(decryptState(sealed, 'wrong'))).toBe('AUTHENTICATION_FAILED');
  });

  it('fails on every flipped byte, naming the part that broke', async () => {
    const sealed = await encryptState(plain, await keyFromPassphrase('pass', newSalt(), FAST));
    const saltAt = 4 + 1 + 1 + 3 + 1;
    const nonceAt = saltAt + 16 + 1;
    // Header: magic 0–3, version 4, KDF 5, log2(N) 6, r 7, p 8, salt length 9, salt, nonce
    // length, nonce; then ciphertext and tag.
    const expected = (index: number): StateDecryptionFailure[] => {
      if (index < 4) return ['NOT_SEALED_STATE'];
      if (index === 4) return ['UNSUPPORTED_VERSION'];
      // Another KDF id, p = 0 or a wrong nonce length break the header's shape.
      if (index === 5 || index === 8 || index === nonceAt - 1) return ['INVALID_HEADER'];
      // A longer salt swallows the nonce length; the next byte (random) is read in its place.
      if (index === saltAt - 1) return ['INVALID_HEADER', 'AUTHENTICATION_FAILED'];
      // Everything else, N and r included, is a valid header that derives or decrypts wrongly.
      return ['AUTHENTICATION_FAILED'];
    };
    for (let index = 0; index < sealed.length; index++) {
      expect(expected(index), `byte ${index}`).toContain(
        await failure(decryptState(flip(sealed, index), 'pass')),
      );
    }
  });

  it('tells a key derived for another salt or KDF from a wrong one', async () => {
    const sealed = await encryptState(plain, await keyFromPassphrase('pass', newSalt(), FAST));
    const otherSalt = await keyFromPassphrase('pass', newSalt(), FAST);
    expect(await failure(decryptState(sealed, otherSalt))).toBe('KEY_MISMATCH');
    const raw = await keyFromBytes(new Uint8Array(32));
    expect(await failure(decryptState(sealed, raw))).toBe('KEY_MISMATCH');
    const rawSealed = await encryptState(plain, raw);
    expect(await failure(decryptState(rawSealed, 'pass'))).toBe('KEY_MISMATCH');
  });

  it('refuses headers that ask for absurd scrypt costs before running scrypt', async () => {
    const sealed = await encryptState(plain, await keyFromPassphrase('pass', newSalt(), FAST));
    const costly = Uint8Array.from(sealed);
    costly[6] = 30; // log2(N) = 30: 128 GiB
    expect(await failure(decryptState(costly, 'pass'))).toBe('INVALID_HEADER');
    expect(await failure(decryptState(sealed.slice(0, 20), 'pass'))).toBe('INVALID_HEADER');
    expect(await failure(decryptState(new Uint8Array(3), 'pass'))).toBe('NOT_SEALED_STATE');
  });

  it('derives with the default cost (N = 2^17, r = 8, p = 1)', async () => {
    const key = await keyFromPassphrase('default cost', newSalt());
    expect(key.derivation).toMatchObject({ kind: 'scrypt', logN: 17, r: 8, p: 1 });
    expect(await decryptState(await encryptState(plain, key), 'default cost')).toEqual(plain);
  });

  it('refuses weak parameters and short salts when deriving', async () => {
    await expect(keyFromPassphrase('p', newSalt(), { logN: 4, r: 8, p: 1 })).rejects.toThrow(
      TypeError,
    );
    await expect(keyFromPassphrase('p', new Uint8Array(8), FAST)).rejects.toThrow(TypeError);
  });
});
