import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { b64, dataOf, errorCodeOf, signUpWithDevice } from './support/graphql.js';
import { ParleyDevice } from './support/parley-client.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

const NUL = '\u0000';
const LONE_SURROGATE = '\ud800';

describeE2E('input hygiene', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('refuses NUL, lone surrogates and overlong strings in any argument with BAD_USER_INPUT', async () => {
    const ana = await signUpWithDevice(app);
    const cases: [string, string, Record<string, unknown>][] = [
      [
        'NUL in a variable',
        `query ($id: ID!) { keyPackageCount(deviceId: $id) { available } }`,
        { id: `${ana.deviceId}${NUL}` },
      ],
      ['NUL in a literal', `{ keyPackageCount(deviceId: "a\\u0000b") { available } }`, {}],
      [
        'a lone surrogate',
        `query ($u: String!) { user(username: $u) { id } }`,
        { u: `ana${LONE_SURROGATE}` },
      ],
      [
        'an overlong string',
        `query ($u: String!) { user(username: $u) { id } }`,
        { u: 'a'.repeat(10_000) },
      ],
      [
        'NUL inside an input object',
        `mutation ($i: RegisterDeviceInput!) { registerDevice(input: $i) { id } }`,
        { i: { name: `laptop${NUL}` } },
      ],
    ];
    for (const [what, query, variables] of cases) {
      const response = await app.gql(query, variables, ana.token);
      expect(errorCodeOf(response), what).toBe('BAD_USER_INPUT');
    }
    const signUp = await app.gql(
      `mutation ($u: String!) { signUp(input: { username: $u, password: "correct horse battery" }) { token } }`,
      { u: `eve${NUL}` },
    );
    expect(errorCodeOf(signUp)).toBe('BAD_USER_INPUT');
    // Nothing was registered on the way.
    const devices = await app.gql<{ devices: unknown[] }>(`{ devices { id } }`, {}, ana.token);
    expect(dataOf(devices).devices).toHaveLength(1);
  });

  it('refuses NUL in a subscription argument (graphql-ws) with BAD_USER_INPUT', async () => {
    const ana = await ParleyDevice.create(app);
    const errors = await ana.subscribeAs(`${ana.deviceId}${NUL}`);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
  });

  it('bounds groupId to 1–255 bytes', async () => {
    const ana = await ParleyDevice.create(app);
    for (const groupId of [Buffer.alloc(0), randomBytes(256), randomBytes(3000)]) {
      const response = await ana.gql(
        `mutation ($deviceId: ID!, $groupId: Bytes!) {
          createConversation(input: { deviceId: $deviceId, groupId: $groupId, ciphersuite: 1 }) { id }
        }`,
        { groupId: b64(groupId) },
      );
      expect(errorCodeOf(response), `${groupId.length} bytes`).toBe('BAD_USER_INPUT');
    }
  });

  it('a NUL request among 40 concurrent well-formed sends fails alone', async () => {
    const ana = await ParleyDevice.create(app);
    const { conversationId, group } = await ana.createConversation();
    const good = await Promise.all(
      Array.from({ length: 40 }, async (_, index) => group.encrypt(`message ${index}`)),
    );
    const sends = good.map((message) => ana.send(conversationId, message));
    const bad = ana.gql<{ sendMessage: { seq: number } }>(
      `mutation ($conversationId: ID!, $message: Bytes!) {
        sendMessage(input: { deviceId: "${ana.deviceId}\\u0000", conversationId: $conversationId, message: $message }) { seq }
      }`,
      { conversationId, message: b64(await group.encrypt('bad')) },
    );
    const responses = await Promise.all([...sends, bad]);
    const last = responses.pop();
    expect(errorCodeOf(last ?? {})).toBe('BAD_USER_INPUT');
    const seqs = responses.map((response) => dataOf(response).sendMessage.seq);
    expect(new Set(seqs).size).toBe(40);
  });
});
