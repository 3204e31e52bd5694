import type { LoggerService } from '@nestjs/common';
import { expect, it } from 'vitest';
import { b64, dataOf, errorCodeOf } from './support/graphql.js';
import { MlsMember } from './support/mls-member.js';
import { describeE2E, startTestApp } from './support/test-app.js';

/** Keeps every line the app logs, at every level. */
class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  private keep = (...parts: unknown[]) => {
    this.lines.push(
      parts.map((part) => (typeof part === 'string' ? part : JSON.stringify(part))).join(' '),
    );
  };
  log = this.keep;
  error = this.keep;
  warn = this.keep;
  debug = this.keep;
  verbose = this.keep;
  fatal = this.keep;
}

describeE2E('logs', () => {
  it('never hold passwords, hashes, tokens or key packages, even when queries fail', async () => {
    const logger = new CapturingLogger();
    const app = await startTestApp({}, { logger });
    try {
      const password = 'a very secret password';
      const signUp = `mutation ($input: CredentialsInput!) { signUp(input: $input) { token user { id } } }`;
      const { token } = dataOf(
        await app.gql<{ signUp: { token: string } }>(signUp, {
          input: { username: 'logged', password },
        }),
      ).signUp;
      // A unique violation makes the database layer log a failed query.
      expect(errorCodeOf(await app.gql(signUp, { input: { username: 'logged', password } }))).toBe(
        'CONFLICT',
      );
      const { registerDevice } = dataOf(
        await app.gql<{ registerDevice: { id: string; identity: string } }>(
          `mutation { registerDevice { id identity } }`,
          {},
          token,
        ),
      );
      const member = await MlsMember.create(registerDevice.identity);
      const [keyPackage] = await member.keyPackages(1);
      const upload = `mutation ($input: UploadKeyPackagesInput!) { uploadKeyPackages(input: $input) { available } }`;
      const input = {
        deviceId: registerDevice.id,
        keyPackages: [b64(keyPackage ?? new Uint8Array())],
      };
      dataOf(await app.gql(upload, { input }, token));
      expect(errorCodeOf(await app.gql(upload, { input }, token))).toBe('INVALID_KEY_PACKAGE');

      expect(logger.lines.some((line) => line.includes('duplicate key'))).toBe(true);
      const secrets = [
        password,
        token,
        'scrypt$',
        input.keyPackages[0] ?? '',
        Buffer.from(keyPackage ?? []).toString('hex'),
      ];
      for (const line of logger.lines) {
        for (const secret of secrets) expect(line).not.toContain(secret);
      }
    } finally {
      await app.close();
    }
  });
});
