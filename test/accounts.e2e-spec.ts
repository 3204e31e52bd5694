import { readFile } from 'node:fs/promises';
import { GraphQLSchemaHost } from '@nestjs/graphql';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { printSortedSchema } from '../apps/server/src/schema.js';
import { dataOf, errorCodeOf, registerDevice, signUpWithDevice } from './support/graphql.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

describeE2E('accounts, devices and health', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('serves exactly the committed schema.graphql', async () => {
    const committed = await readFile(new URL('../schema.graphql', import.meta.url), 'utf8');
    expect(printSortedSchema(app.app.get(GraphQLSchemaHost).schema)).toBe(committed);
  });

  it('reports the database on /health', async () => {
    const response = await fetch(app.url.replace('/graphql', '/health'));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      status: 'ok',
      info: { database: { status: 'up' } },
    });
  });

  it('signs up, signs in case-insensitively, and answers me', async () => {
    const signUp = await app.gql<{
      signUp: { token: string; user: { id: string; username: string } };
    }>(
      `mutation { signUp(input: { username: "Alice_1", password: "correct horse battery" }) { token user { id username } } }`,
    );
    const { user } = dataOf(signUp).signUp;
    expect(user.username).toBe('alice_1');

    const signIn = await app.gql<{ signIn: { token: string } }>(
      `mutation { signIn(input: { username: "ALICE_1", password: "correct horse battery" }) { token } }`,
    );
    const me = await app.gql<{ me: { id: string } }>(
      `{ me { id } }`,
      {},
      dataOf(signIn).signIn.token,
    );
    expect(dataOf(me).me.id).toBe(user.id);
  });

  it('finds users by username, case-insensitively, for signed-in callers only', async () => {
    const carol = await signUpWithDevice(app, 'Carol_Finder');
    const query = `query ($u: String!) { user(username: $u) { id username } }`;
    const found = await app.gql<{ user: { id: string } }>(
      query,
      { u: 'CAROL_finder' },
      carol.token,
    );
    expect(dataOf(found).user.id).toBe(carol.userId);
    expect(errorCodeOf(await app.gql(query, { u: 'nobody_here' }, carol.token))).toBe('NOT_FOUND');
    expect(errorCodeOf(await app.gql(query, { u: 'carol_finder' }))).toBe('UNAUTHENTICATED');
    const byIds = await app.gql<{ users: { username: string }[] }>(
      `query ($ids: [ID!]!) { users(ids: $ids) { username } }`,
      { ids: [carol.userId, '00000000-0000-4000-8000-000000000000', 'not-a-uuid'] },
      carol.token,
    );
    expect(dataOf(byIds).users).toEqual([{ username: 'carol_finder' }]);
  });

  it('rejects a taken username, a wrong password and an unknown user alike', async () => {
    const input = { username: 'bob', password: 'correct horse battery' };
    const mutation = `mutation ($input: CredentialsInput!) { signUp(input: $input) { token } }`;
    dataOf(await app.gql(mutation, { input }));
    expect(errorCodeOf(await app.gql(mutation, { input }))).toBe('CONFLICT');
    const signIn = `mutation ($input: CredentialsInput!) { signIn(input: $input) { token } }`;
    expect(
      errorCodeOf(await app.gql(signIn, { input: { ...input, password: 'wrong password' } })),
    ).toBe('UNAUTHENTICATED');
    expect(errorCodeOf(await app.gql(signIn, { input: { ...input, username: 'nobody' } }))).toBe(
      'UNAUTHENTICATED',
    );
  });

  it('validates input with BAD_USER_INPUT', async () => {
    const response = await app.gql(
      `mutation { signUp(input: { username: "a b", password: "short" }) { token } }`,
    );
    expect(errorCodeOf(response)).toBe('BAD_USER_INPUT');
  });

  it('refuses operations without a valid token', async () => {
    expect(errorCodeOf(await app.gql(`{ me { id } }`))).toBe('UNAUTHENTICATED');
    expect(errorCodeOf(await app.gql(`{ me { id } }`, {}, 'not-a-jwt'))).toBe('UNAUTHENTICATED');
    const alice = await signUpWithDevice(app);
    const forged = `${alice.token.slice(0, -4)}AAAA`;
    expect(errorCodeOf(await app.gql(`{ me { id } }`, {}, forged))).toBe('UNAUTHENTICATED');
  });

  it('gives devices their MLS identity, lists and deletes only the caller’s own', async () => {
    const alice = await signUpWithDevice(app);
    const bob = await signUpWithDevice(app);
    expect(alice.identity).toBe(`${alice.userId}:${alice.deviceId}@parley.test`);
    expect(alice.deviceId).toMatch(/^[0-9a-f]{16}$/);
    const second = await registerDevice(app, alice.token);

    const list = await app.gql<{ devices: { id: string }[] }>(
      `{ devices { id } }`,
      {},
      alice.token,
    );
    expect(dataOf(list).devices.map((device) => device.id)).toEqual([
      alice.deviceId,
      second.deviceId,
    ]);

    const remove = `mutation ($id: ID!) { deleteDevice(deviceId: $id) }`;
    expect(errorCodeOf(await app.gql(remove, { id: alice.deviceId }, bob.token))).toBe('FORBIDDEN');
    dataOf(await app.gql(remove, { id: second.deviceId }, alice.token));
    expect(errorCodeOf(await app.gql(remove, { id: second.deviceId }, alice.token))).toBe(
      'NOT_FOUND',
    );
    const after = await app.gql<{ devices: { id: string }[] }>(
      `{ devices { id } }`,
      {},
      alice.token,
    );
    expect(dataOf(after).devices.map((device) => device.id)).toEqual([alice.deviceId]);
  });

  it('limits devices per user', async () => {
    const limited = await startTestApp({ limits: { ...app.config.limits, devicesPerUser: 2 } });
    try {
      const carol = await signUpWithDevice(limited);
      await registerDevice(limited, carol.token);
      const third = await limited.gql(`mutation { registerDevice { id } }`, {}, carol.token);
      expect(errorCodeOf(third)).toBe('LIMIT_EXCEEDED');
    } finally {
      await limited.close();
    }
  });
});
