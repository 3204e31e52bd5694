import { expect } from 'vitest';
import type { GraphqlEndpoint, GraphqlResponse } from './test-app.js';

/** The data of a response that must have succeeded. */
export function dataOf<T>(response: GraphqlResponse<T>): T {
  expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
  if (response.data == null) throw new Error('no data');
  return response.data;
}

/** The `extensions.code` of a response that must have failed with exactly one error. */
export function errorCodeOf(response: GraphqlResponse<unknown>): unknown {
  expect(response.errors, 'expected an error').toHaveLength(1);
  return response.errors?.[0]?.extensions?.code;
}

/** Bytes as the API's Bytes scalar wants them. */
export const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

/** A signed-up user with a registered device. */
export interface TestDevice {
  userId: string;
  token: string;
  deviceId: string;
  identity: string;
}

let counter = 0;

/** Signs up a fresh user and registers one device. */
export async function signUpWithDevice(
  app: GraphqlEndpoint,
  username?: string,
): Promise<TestDevice> {
  counter += 1;
  const name = username ?? `user${counter}_${Math.random().toString(36).slice(2, 8)}`;
  const { signUp } = dataOf(
    await app.gql<{ signUp: { token: string; user: { id: string } } }>(
      `mutation ($input: CredentialsInput!) { signUp(input: $input) { token user { id } } }`,
      { input: { username: name, password: 'correct horse battery' } },
    ),
  );
  const device = await registerDevice(app, signUp.token);
  return { userId: signUp.user.id, token: signUp.token, ...device };
}

/** Registers another device for the token's user. */
export async function registerDevice(
  app: GraphqlEndpoint,
  token: string,
): Promise<{ deviceId: string; identity: string }> {
  const { registerDevice } = dataOf(
    await app.gql<{ registerDevice: { id: string; identity: string } }>(
      `mutation { registerDevice(input: { name: "test" }) { id identity } }`,
      {},
      token,
    ),
  );
  return { deviceId: registerDevice.id, identity: registerDevice.identity };
}
