import { describe, expect, it } from 'vitest';
import { formatIdentity, parseIdentity } from './identity.js';

const userId = '3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f';
const deviceId = 'a1b2c3d4e5f60718';
const domain = 'chat.example.org';
const text = `${userId}:${deviceId}@${domain}`;

describe('identity', () => {
  it('formats and parses <userId>:<deviceId>@<domain>, as text and as credential bytes', () => {
    expect(formatIdentity({ userId, deviceId, domain })).toBe(text);
    expect(parseIdentity(text)).toEqual({ userId, deviceId, domain });
    expect(parseIdentity(new TextEncoder().encode(text))).toEqual({ userId, deviceId, domain });
    expect(parseIdentity(`${userId}:${deviceId}@localhost`)?.domain).toBe('localhost');
  });

  it.each([
    ['an upper-case user id', `${userId.toUpperCase()}:${deviceId}@${domain}`],
    ['a user id of dashes only', `${'-'.repeat(36)}:${deviceId}@${domain}`],
    ['a user id without dashes', `${userId.replaceAll('-', '')}abcd:${deviceId}@${domain}`],
    ['a short device id (core-crypto drops leading zeros)', `${userId}:1b2c3d4e5f60718@${domain}`],
    ['a long device id', `${userId}:${deviceId}0@${domain}`],
    ['an upper-case device id', `${userId}:${deviceId.toUpperCase()}@${domain}`],
    ['no domain', `${userId}:${deviceId}@`],
    ['an upper-case domain', `${userId}:${deviceId}@Chat.example.org`],
    ['a domain with a port', `${userId}:${deviceId}@${domain}:443`],
    ['a second @', `${userId}:${deviceId}@${domain}@evil.org`],
    ['an empty label', `${userId}:${deviceId}@chat..example.org`],
    ['a label ending in a dash', `${userId}:${deviceId}@chat-.example.org`],
    ['a domain over 253 characters', `${userId}:${deviceId}@${'a'.repeat(63)}.`.padEnd(400, 'b')],
    ['no separators', `${userId}${deviceId}${domain}`],
    ['@ before :', `${userId}@${deviceId}:${domain}`],
    ['surrounding whitespace', ` ${text}`],
    ['a trailing newline', `${text}\n`],
    ['the empty string', ''],
  ])('refuses %s', (_, identity) => {
    expect(parseIdentity(identity)).toBeNull();
    expect(parseIdentity(new TextEncoder().encode(identity))).toBeNull();
  });

  it('refuses bytes that are not UTF-8 rather than reading replacement characters', () => {
    const bytes = new TextEncoder().encode(text);
    bytes[bytes.length - 1] = 0xff;
    expect(parseIdentity(bytes)).toBeNull();
  });

  it('refuses to format an identity from bad parts', () => {
    expect(() => formatIdentity({ userId: 'alice', deviceId, domain })).toThrow(TypeError);
    expect(() => formatIdentity({ userId, deviceId: 'abc', domain })).toThrow(TypeError);
    expect(() => formatIdentity({ userId, deviceId, domain: 'a b' })).toThrow(TypeError);
    expect(() => formatIdentity({ userId, deviceId, domain: '' })).toThrow(TypeError);
  });

  it('accepts a 253-character domain of 63-character labels, and no longer', () => {
    const label = 'a'.repeat(63);
    const longest = [label, label, label, 'a'.repeat(61)].join('.');
    expect(longest).toHaveLength(253);
    expect(parseIdentity(`${userId}:${deviceId}@${longest}`)?.domain).toBe(longest);
    expect(parseIdentity(`${userId}:${deviceId}@${longest}a`)).toBeNull();
    expect(parseIdentity(`${userId}:${deviceId}@${'a'.repeat(64)}`)).toBeNull();
  });
});
