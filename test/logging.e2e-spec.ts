import type { LoggerService } from '@nestjs/common';
import { expect, it } from 'vitest';
import { b64, dataOf, errorCodeOf } from './support/graphql.js';
import { MlsMember } from '@parley/mls-member';
import { ParleyDevice } from './support/parley-client.js';
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

/** One JSON log line, as far as these tests read it. */
interface JsonLine {
  level: string;
  time: string;
  msg: string;
  reqId?: string;
  context?: string;
  req?: { method: string; url: string };
  res?: { statusCode: number };
  graphql?: { type: string; operation: string; code: string };
}

describeE2E('JSON logs', () => {
  it('are one JSON object a line, carry the request id, and never a secret', async () => {
    const raw: string[] = [];
    const app = await startTestApp({}, { logStream: { write: (line: string) => raw.push(line) } });
    try {
      const post = (body: unknown, headers: Record<string, string> = {}) =>
        fetch(app.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify(body),
        });
      const password = 'another very secret password';
      const signUp = `mutation ($input: CredentialsInput!) { signUp(input: $input) { token user { id } } }`;
      const input = { username: 'jsonlogged', password };
      const first = await post(
        { query: signUp, variables: { input } },
        { 'x-request-id': 'lb-42' },
      );
      // A caller's plausible id is kept and returned; anything else is replaced by a fresh one.
      expect(first.headers.get('x-request-id')).toBe('lb-42');
      const { token } = dataOf(
        (await first.json()) as { data: { signUp: { token: string } } },
      ).signUp;
      const duplicate = await post(
        { query: signUp, variables: { input } },
        { 'x-request-id': 'no spaces allowed' },
      );
      const duplicateId = duplicate.headers.get('x-request-id') ?? '';
      expect(duplicateId).toMatch(/^[0-9a-f-]{36}$/);
      expect(errorCodeOf((await duplicate.json()) as never)).toBe('CONFLICT');
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
      const uploadInput = {
        deviceId: registerDevice.id,
        keyPackages: [b64(keyPackage ?? new Uint8Array())],
      };
      dataOf(await app.gql(upload, { input: uploadInput }, token));
      expect(errorCodeOf(await app.gql(upload, { input: uploadInput }, token))).toBe(
        'INVALID_KEY_PACKAGE',
      );
      // A message in a conversation: its ciphertext must not reach a log either.
      const alice = await ParleyDevice.create(app);
      const { conversationId, group } = await alice.createConversation();
      const ciphertext = await group.encrypt('payload that stays out of the logs');
      dataOf(
        await alice.gql(
          `mutation ($deviceId: ID!, $conversationId: ID!, $message: Bytes!) {
            sendMessage(input: { deviceId: $deviceId, conversationId: $conversationId, message: $message }) { seq }
          }`,
          { conversationId, message: b64(ciphertext) },
        ),
      );
      // Variables in a query string (a GraphQL GET): the log keeps the path only.
      const query = new URLSearchParams({ query: signUp, variables: JSON.stringify({ input }) });
      await fetch(`${app.url}?${query.toString()}`, {
        headers: { 'apollo-require-preflight': '1' },
      });

      const lines = raw
        .join('')
        .split('\n')
        .filter((line) => line !== '');
      const parsed = lines.map((line) => JSON.parse(line) as JsonLine);
      for (const line of parsed) {
        expect(typeof line.level).toBe('string');
        expect(Number.isNaN(Date.parse(line.time))).toBe(false);
        expect(typeof line.msg).toBe('string');
      }
      // One line per request, with its id, path, status and GraphQL outcome.
      const completed = parsed.filter((line) => line.msg === 'request completed');
      expect(completed.length).toBeGreaterThanOrEqual(6);
      for (const line of completed) {
        expect(line.reqId).toMatch(/^[\w.:-]+$/);
        expect(line.req?.url).toBe('/graphql');
      }
      expect(completed.find((line) => line.reqId === 'lb-42')?.graphql).toEqual({
        type: 'mutation',
        operation: 'signUp',
        code: 'OK',
      });
      expect(completed.find((line) => line.reqId === duplicateId)?.graphql).toEqual({
        type: 'mutation',
        operation: 'signUp',
        code: 'CONFLICT',
      });
      expect(completed.map((line) => line.graphql?.operation)).toContain('sendMessage');
      // The database's complaint is logged with the id of the request that caused it.
      const failedQuery = parsed.find((line) => line.msg.includes('duplicate key'));
      expect(failedQuery?.context).toBe('Database');
      expect(failedQuery?.reqId).toBe(duplicateId);

      const secrets = [
        password,
        token,
        'scrypt$',
        uploadInput.keyPackages[0] ?? '',
        Buffer.from(keyPackage ?? []).toString('hex'),
        'Bearer',
        alice.token,
        b64(ciphertext),
        Buffer.from(ciphertext).toString('hex'),
      ];
      for (const line of lines) {
        for (const secret of secrets) expect(line).not.toContain(secret);
      }
    } finally {
      await app.close();
    }
  });
});
