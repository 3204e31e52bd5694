import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { createLogger, PinoNestLogger, requestContext } from './logger.js';
import { requestIdOf } from './request-logging.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('debug', {
    write: (line: string) => {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  return { lines, logger };
}

describe('PinoNestLogger', () => {
  it("writes Nest's calls as JSON with their context, and the request id inside a request", () => {
    const { lines, logger } = capture();
    const nest = new PinoNestLogger(logger);
    nest.log('outside', 'Boot');
    requestContext.run({ reqId: 'r-1' }, () => {
      nest.warn('inside', 'Database');
      nest.error('failed', 'Error: failed\n    at somewhere', 'GraphQL');
    });
    nest.debug({ some: 'object' });
    expect(lines).toMatchObject([
      { level: 'info', context: 'Boot', msg: 'outside' },
      { level: 'warn', context: 'Database', reqId: 'r-1', msg: 'inside' },
      {
        level: 'error',
        context: 'GraphQL',
        reqId: 'r-1',
        msg: 'failed',
        stack: 'Error: failed\n    at somewhere',
      },
      { level: 'debug', msg: '{"some":"object"}' },
    ]);
    expect(lines[0]).not.toHaveProperty('reqId');
  });

  it('logs nothing below its level, and redacts credentials passed as fields', () => {
    const lines: string[] = [];
    const logger = createLogger('warn', { write: (line: string) => lines.push(line) });
    new PinoNestLogger(logger).log('dropped');
    logger.warn({ input: { password: 'pw-secret' }, headers: { authorization: 'Bearer t' } }, 'x');
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain('pw-secret');
    expect(lines[0]).not.toContain('Bearer');
  });
});

describe('requestIdOf', () => {
  const request = (id?: string) =>
    ({ headers: id === undefined ? {} : { 'x-request-id': id } }) as IncomingMessage;

  it("keeps a caller's plausible id and replaces anything else with a UUID", () => {
    expect(requestIdOf(request('edge-1.2:3_x'))).toBe('edge-1.2:3_x');
    for (const bad of [undefined, '', 'a b', 'x'.repeat(129), '{"json":1}', 'line\nbreak']) {
      expect(requestIdOf(request(bad))).toMatch(/^[0-9a-f]{8}-[0-9a-f-]{27}$/);
    }
  });
});
