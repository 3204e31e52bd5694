import {
  BadInputError,
  ForbiddenError,
  LastAdminError,
  NetworkError,
  NotFoundError,
  RateLimitedError,
  RemovedFromConversationError,
  StateDecryptionError,
} from '@parley/client';
import { describe, expect, it } from 'vitest';
import { CliError, describeError, EXIT, UsageError } from './errors.js';
import { progressLine } from './context.js';

describe('describeError', () => {
  const describe_ = (error: unknown) => describeError(error, 'profile ana');

  it('gives each kind of failure its exit code and one line', () => {
    expect(describe_(new UsageError('unknown command x'))).toMatchObject({
      code: 'USAGE',
      exitCode: EXIT.usage,
      internal: false,
    });
    expect(describe_(new BadInputError('INVALID_URL', 'x is not a server URL')).exitCode).toBe(
      EXIT.usage,
    );
    expect(describe_(new BadInputError('BAD_USER_INPUT', 'too short')).exitCode).toBe(EXIT.failed);
    expect(describe_(new NetworkError('NETWORK_ERROR', 'Cannot reach')).exitCode).toBe(
      EXIT.unavailable,
    );
    expect(describe_(new RateLimitedError('RATE_LIMITED', 'slow down')).exitCode).toBe(
      EXIT.temporary,
    );
    expect(describe_(new NotFoundError('NOT_FOUND', 'no such user')).exitCode).toBe(EXIT.failed);
    expect(describe_(new CliError('PROFILE_BUSY', 'busy', EXIT.temporary)).exitCode).toBe(75);
  });

  it('names the profile a wrong passphrase does not open', () => {
    const outcome = describe_(new StateDecryptionError('AUTHENTICATION_FAILED', 'tag mismatch'));
    expect(outcome).toMatchObject({ exitCode: EXIT.failed, code: 'AUTHENTICATION_FAILED' });
    expect(outcome.message).toMatch(/^The passphrase does not open profile ana/);
  });

  it('says where a removed member’s history still is', () => {
    expect(describe_(new RemovedFromConversationError('c1')).message).toContain('parley history');
  });

  it('says what to do about refusals of roles and direct conversations (exit 1)', () => {
    const admin = describe_(
      new ForbiddenError('FORBIDDEN', 'Only an admin adds other users', {
        reason: 'ADMIN_REQUIRED',
      }),
    );
    expect(admin).toMatchObject({ code: 'FORBIDDEN', exitCode: EXIT.failed });
    expect(admin.message).toContain('only an admin of the conversation may do that');
    const last = describe_(new LastAdminError('LAST_ADMIN', 'The last admin cannot step down'));
    expect(last).toMatchObject({ code: 'LAST_ADMIN', exitCode: EXIT.failed });
    expect(last.message).toContain('parley role <conversation> <user> admin');
    const direct = describe_(
      new ForbiddenError('FORBIDDEN', 'Nobody else joins a direct conversation', {
        reason: 'DIRECT_CONVERSATION',
      }),
    );
    expect(direct.message).toContain('parley create makes a group');
    for (const outcome of [admin, last, direct]) expect(outcome.message).not.toContain('\n');
  });

  it('calls anything else an internal error (70) and points at --debug', () => {
    const outcome = describe_(new TypeError('x is undefined'));
    expect(outcome).toMatchObject({ code: 'INTERNAL', exitCode: EXIT.internal, internal: true });
    expect(outcome.message).toContain('--debug');
  });
});

describe('progressLine', () => {
  it('counts users, never "0/N" before the first claim', () => {
    expect(progressLine('claiming', 0, 2, true)).toBe(
      'claiming key packages of 2 users (every device of each, you included)…',
    );
    expect(progressLine('claiming', 100, 250)).toBe('claiming key packages: 100/250 users done…');
    expect(progressLine('committing', 2, 2)).toContain('key packages of 2 users claimed');
    expect(progressLine('done', 2, 2)).toBeNull();
  });
});
