import { describe, expect, it } from 'vitest';
import { clientAddressOf, UNKNOWN_ADDRESS, upgradeRequestAddress } from './client-address.js';

const upgrade = (peer: string, forwarded?: string | string[]) => ({
  socket: { remoteAddress: peer },
  headers: forwarded === undefined ? {} : { 'x-forwarded-for': forwarded },
});

describe('upgradeRequestAddress', () => {
  it('is the TCP peer when no proxy is trusted, whatever the client claims', () => {
    expect(upgradeRequestAddress(upgrade('203.0.113.9', '1.2.3.4'), 0)).toBe('203.0.113.9');
  });

  it('counts trusted hops from the right of X-Forwarded-For, as Fastify does for HTTP', () => {
    // client 1.1.1.1 -> spoofed entry 6.6.6.6 first; proxy A adds 1.1.1.1; proxy B adds A's.
    const request = upgrade('10.0.0.2', '6.6.6.6, 1.1.1.1, 10.0.0.1');
    expect(upgradeRequestAddress(request, 1)).toBe('10.0.0.1');
    expect(upgradeRequestAddress(request, 2)).toBe('1.1.1.1');
    expect(upgradeRequestAddress(upgrade('10.0.0.1', ['6.6.6.6', '1.1.1.1']), 1)).toBe('1.1.1.1');
  });

  it('stops at the leftmost address when fewer hops are present than trusted', () => {
    expect(upgradeRequestAddress(upgrade('10.0.0.1', '1.1.1.1'), 5)).toBe('1.1.1.1');
    expect(upgradeRequestAddress(upgrade('10.0.0.1'), 1)).toBe('10.0.0.1');
  });

  it('says unknown when there is no request', () => {
    expect(upgradeRequestAddress(undefined, 0)).toBe(UNKNOWN_ADDRESS);
  });
});

describe('clientAddressOf', () => {
  it('takes a graphql-ws context’s address, else the HTTP request’s ip', () => {
    expect(clientAddressOf({ clientAddress: '1.1.1.1', req: { ip: '2.2.2.2' } })).toBe('1.1.1.1');
    expect(clientAddressOf({ req: { ip: '2.2.2.2' } })).toBe('2.2.2.2');
    expect(clientAddressOf({})).toBe(UNKNOWN_ADDRESS);
  });
});
