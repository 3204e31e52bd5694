import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { NetworkError, RateLimitedError, UnauthenticatedError } from '../errors.js';
import { closeError, GraphqlTransport, networkReason } from './graphql-transport.js';
import { MeDocument } from '../graphql/generated.js';

describe('closeError', () => {
  it('reads the server’s close codes as typed errors', () => {
    expect(closeError({ code: 4401, reason: 'Token revoked' })).toBeInstanceOf(
      UnauthenticatedError,
    );
    expect(closeError({ code: 4403, reason: 'Forbidden' })).toBeInstanceOf(UnauthenticatedError);
    const limited = closeError({ code: 4429, reason: 'Rate limited; retry after 7 s' });
    expect(limited).toBeInstanceOf(RateLimitedError);
    expect((limited as RateLimitedError).retryAfterSeconds).toBe(7);
    expect(closeError({ code: 1006, reason: '' })).toBeInstanceOf(NetworkError);
    expect(closeError(new Error('socket hang up')).message).toContain('socket hang up');
  });
});

describe('readable transport failures', () => {
  it('names the cause of a failed connection, wherever the error hides it', () => {
    // fetch: TypeError('fetch failed') with the system error as cause.
    const fetchFailure = new TypeError('fetch failed', {
      cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }),
    });
    expect(networkReason(fetchFailure)).toEqual({
      text: 'connection refused',
      code: 'ECONNREFUSED',
    });
    // ws: an ErrorEvent (no code of its own) whose `error` holds the system error.
    const errorEvent = {
      type: 'error',
      message: 'connect ECONNREFUSED 127.0.0.1:9',
      error: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), {
        code: 'ECONNREFUSED',
      }),
    };
    const live = closeError(errorEvent, 'http://127.0.0.1:9/graphql');
    expect(live).toBeInstanceOf(NetworkError);
    expect(live.message).toBe(
      'Cannot reach the server at http://127.0.0.1:9/graphql (connection refused)',
    );
    // Happy eyeballs: an AggregateError of attempts.
    const aggregate = new TypeError('fetch failed', {
      cause: new AggregateError([Object.assign(new Error('x'), { code: 'ENOTFOUND' })]),
    });
    expect(networkReason(aggregate).text).toBe('host not found');
  });

  it('describes a close event by code and meaning, never as [object Object]', () => {
    const lost = closeError({ code: 1006, reason: '' }, 'http://h/graphql');
    expect(lost.message).toBe(
      'The live connection to http://h/graphql ended: closed with 1006 (connection lost)',
    );
    // A 1006 after a socket error names the error's cause.
    const refused = closeError({ code: 1006, reason: '' }, 'http://h/graphql', {
      error: { code: 'ECONNRESET' },
    });
    expect(refused.message).toBe('Cannot reach the server at http://h/graphql (connection reset)');
    for (const odd of [{}, { type: 'error' }, 42, null, undefined]) {
      expect(closeError(odd).message).not.toContain('[object Object]');
    }
  });

  it('turns a refused connection into a NetworkError with the URL and the reason', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/graphql`;
    const transport = new GraphqlTransport({ url });
    const failure = await transport.request(MeDocument, {}).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(NetworkError);
    expect((failure as NetworkError).message).toBe(
      `Cannot reach the server at ${url} (connection refused)`,
    );
  });

  it('refuses requests once shut down, with CLOSED', async () => {
    const transport = new GraphqlTransport({ url: 'http://127.0.0.1:9/graphql' });
    await transport.shutdown();
    await expect(transport.request(MeDocument, {})).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

/** A loopback port nothing listens on (one just released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
