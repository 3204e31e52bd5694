import {
  type Conversation,
  DeviceRevokedError,
  MemoryStateStore,
  ParleyClient,
  tsMlsEngineFactory,
  UnauthenticatedError,
} from '@parley/client';
import { randomBytes } from 'node:crypto';
import { type Client, createClient } from 'graphql-ws';
import { jwtVerify, SignJWT } from 'jose';
import { DataSource } from 'typeorm';
import { TokenService } from '../apps/server/src/auth/token.service.js';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, dataOf, errorCodeOf } from './support/graphql.js';
import type { MlsGroup } from '@parley/mls-member';
import { ParleyDevice } from './support/parley-client.js';
import { eventually, sdkClient, sdkDevice, sdkUser } from './support/sdk-clients.js';
import {
  describeE2E,
  startTestApp,
  startTwoInstances,
  type TestApp,
  twoInstancesSkipReason,
} from './support/test-app.js';

/** A live event as these tests read it. */
interface Heard {
  __typename: string;
  entry?: { conversationId: string; seq: number };
  conversationId?: string;
  revokedDeviceId?: string;
}

const EVENTS = `subscription ($deviceId: ID!) {
  events(deviceId: $deviceId) {
    __typename
    ... on LogEntryEvent { entry { conversationId seq } }
    ... on DeviceRevokedEvent { conversationId revokedDeviceId }
  }
}`;

/** How a subscription or its socket ended. */
interface Ending {
  at: number;
  /** The subscription's GraphQL error code, if it ended with one. */
  code?: unknown;
  /** The socket's close code and reason, if the socket was closed. */
  closeCode?: number;
  closeReason?: string;
}

/** One device's live subscription on its own socket, recording events and how it ended. */
class Live {
  readonly events: Heard[] = [];
  ending: Ending | null = null;
  private client: Client | null = null;

  static async open(app: TestApp, token: string, deviceId: string): Promise<Live> {
    const live = new Live();
    const client = createClient({
      url: app.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 0,
      on: {
        closed: (event) => {
          const { code, reason } = event as { code: number; reason: string };
          live.ending ??= { at: Date.now(), closeCode: code, closeReason: reason };
        },
      },
    });
    live.client = client;
    const opened = live;
    client.subscribe<{ events: Heard }>(
      { query: EVENTS, variables: { deviceId } },
      {
        next: (result) => {
          if (result.data != null) opened.events.push(result.data.events);
        },
        error: (error: unknown) => {
          const [first] = Array.isArray(error)
            ? (error as { extensions?: { code?: unknown } }[])
            : [];
          opened.ending ??= { at: Date.now(), code: first?.extensions?.code };
        },
        complete: () => undefined,
      },
    );
    await eventually(() => opened.events.some((event) => event.__typename === 'SubscribedEvent'));
    return opened;
  }

  /** Runs a query or mutation over this socket, next to its subscription. */
  async run(query: string): Promise<{ data?: unknown; errors?: readonly unknown[] }> {
    const client = this.client;
    if (client === null) throw new Error('not open');
    return new Promise((resolve) => {
      let result: { data?: unknown; errors?: readonly unknown[] } = {};
      client.subscribe(
        { query },
        {
          next: (value) => {
            result = value;
          },
          error: (error: unknown) => {
            resolve({ errors: Array.isArray(error) ? error : [error] });
          },
          complete: () => {
            resolve(result);
          },
        },
      );
    });
  }

  async close(): Promise<void> {
    await this.client?.dispose();
  }
}

/** Three devices of two users in one group: Alice, Bob's laptop and Bob's phone. */
async function trio(app: TestApp): Promise<{
  conversationId: string;
  alice: { device: ParleyDevice; group: MlsGroup };
  laptop: { device: ParleyDevice; group: MlsGroup };
  phone: { device: ParleyDevice; group: MlsGroup };
}> {
  const alice = await ParleyDevice.create(app);
  const laptop = await ParleyDevice.create(app);
  const phone = await ParleyDevice.another(app, laptop);
  await laptop.uploadKeyPackages(1);
  await phone.uploadKeyPackages(1);
  const { conversationId, group } = await alice.createConversation();
  dataOf(
    await alice.submit(conversationId, await group.addMembers(await alice.claim([laptop.userId]))),
  );
  group.confirmCommit();
  const laptopJoined = await laptop.joinFromWelcome();
  const phoneJoined = await phone.joinFromWelcome();
  return {
    conversationId,
    alice: { device: alice, group },
    laptop: { device: laptop, group: laptopJoined.group },
    phone: { device: phone, group: phoneJoined.group },
  };
}

const DELETE_DEVICE = `mutation ($id: ID!) { deleteDevice(deviceId: $id) }`;
const ME = `{ me { id } }`;

async function signIn(app: TestApp, username: string): Promise<string> {
  return dataOf(
    await app.gql<{ signIn: { token: string } }>(
      `mutation ($input: CredentialsInput!) { signIn(input: $input) { token } }`,
      { input: { username, password: 'correct horse battery' } },
    ),
  ).signIn.token;
}

async function signUp(app: TestApp): Promise<{ username: string; token: string; userId: string }> {
  const username = `rev_${Math.random().toString(36).slice(2, 10)}`;
  const { signUp: payload } = dataOf(
    await app.gql<{ signUp: { token: string; user: { id: string } } }>(
      `mutation ($input: CredentialsInput!) { signUp(input: $input) { token user { id } } }`,
      { input: { username, password: 'correct horse battery' } },
    ),
  );
  return { username, token: payload.token, userId: payload.user.id };
}

async function registerDevice(app: TestApp, token: string): Promise<string> {
  return dataOf(
    await app.gql<{ registerDevice: { id: string } }>(
      `mutation { registerDevice { id } }`,
      {},
      token,
    ),
  ).registerDevice.id;
}

describeE2E('revoked devices and tokens', () => {
  let app: TestApp;
  const clients: ParleyClient[] = [];
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await app.close();
  });

  it('ends a deleted device’s subscription within 1 s with DEVICE_REVOKED; it hears nothing after, the others hear the revocation', async () => {
    const { conversationId, alice, laptop, phone } = await trio(app);
    const aliceLive = await Live.open(app, alice.device.token, alice.device.deviceId);
    const phoneLive = await Live.open(app, phone.device.token, phone.device.deviceId);

    const started = Date.now();
    dataOf(await app.gql(DELETE_DEVICE, { id: phone.device.deviceId }, laptop.device.token));
    await eventually(() => phoneLive.ending !== null, 1000);
    const ended = phoneLive.ending;
    console.log(`deleteDevice -> subscription ended: ${(ended?.at ?? 0) - started} ms`);
    expect(ended?.code).toBe('DEVICE_REVOKED');
    expect((ended?.at ?? Infinity) - started).toBeLessThan(1000);

    const told = await (async () => {
      await eventually(
        () => aliceLive.events.some((e) => e.__typename === 'DeviceRevokedEvent'),
        1000,
      );
      return aliceLive.events.find((e) => e.__typename === 'DeviceRevokedEvent');
    })();
    expect(told).toEqual({
      __typename: 'DeviceRevokedEvent',
      conversationId,
      revokedDeviceId: phone.device.deviceId,
    });

    // Sent afterwards: Alice hears it, the deleted device does not.
    const heardBefore = phoneLive.events.length;
    const seq = await alice.device.say(alice.group, conversationId, 'after the deletion');
    await eventually(() => aliceLive.events.some((e) => e.entry?.seq === seq));
    expect(phoneLive.events).toHaveLength(heardBefore);
    expect(phoneLive.events.some((e) => e.entry !== undefined)).toBe(false);
    await aliceLive.close();
    await phoneLive.close();
  });

  it('refuses every read and write that names a deleted device', async () => {
    const { conversationId, alice, laptop, phone } = await trio(app);
    dataOf(await app.gql(DELETE_DEVICE, { id: phone.device.deviceId }, laptop.device.token));
    const attempts = {
      messages: await phone.device.page(conversationId),
      sendMessage: await phone.device.send(
        conversationId,
        await phone.group.encrypt('from a deleted device'),
      ),
      submitCommitBundle: await phone.device.submit(conversationId, await phone.group.update()),
      acknowledge: await phone.device.gql(
        `mutation ($deviceId: ID!, $c: ID!) { acknowledge(deviceId: $deviceId, conversationId: $c, seq: 1) }`,
        { c: conversationId },
      ),
      welcomes: await phone.device.gql(
        `query ($deviceId: ID!) { welcomes(deviceId: $deviceId) { id } }`,
      ),
      groupInfo: await phone.device.gql(
        `query ($deviceId: ID!, $c: ID!) { groupInfo(deviceId: $deviceId, conversationId: $c) }`,
        { c: conversationId },
      ),
      keyPackageCount: await phone.device.gql(
        `query ($deviceId: ID!) { keyPackageCount(deviceId: $deviceId) { available } }`,
      ),
      uploadKeyPackages: await phone.device.gql(
        `mutation ($deviceId: ID!, $k: [Bytes!]!) { uploadKeyPackages(input: { deviceId: $deviceId, keyPackages: $k }) { available } }`,
        { k: (await phone.device.mls.keyPackages(1)).map(b64) },
      ),
      claimKeyPackages: await phone.device.gql(
        `mutation ($deviceId: ID!, $u: [ID!]!) { claimKeyPackages(input: { deviceId: $deviceId, userIds: $u }) { keyPackages { deviceId } } }`,
        { u: [laptop.device.userId] },
      ),
    };
    const codes = Object.fromEntries(
      Object.entries(attempts).map(([operation, response]) => [operation, errorCodeOf(response)]),
    );
    expect(codes).toEqual(Object.fromEntries(Object.keys(attempts).map((op) => [op, 'NOT_FOUND'])));
    const subscribed = await phone.device.subscribeAs(phone.device.deviceId);
    expect(subscribed).toMatchObject([{ extensions: { code: 'NOT_FOUND' } }]);
    // Someone else's device, which exists, is not the phone's to listen as.
    expect(await phone.device.subscribeAs(alice.device.deviceId)).toMatchObject([
      { extensions: { code: 'FORBIDDEN' } },
    ]);
    // Nothing was stored: the log holds the add commit only.
    expect((await alice.device.entries(conversationId)).map((entry) => entry.kind)).toEqual([
      'COMMIT',
    ]);
    // The seat stays, marked leaving, until a commit removes the leaf; the roster no longer
    // lists the device.
    const seats: { device_id: string; leaving: boolean }[] = await app.app
      .get(DataSource)
      .query(`SELECT "device_id", "leaving" FROM "conversation_members" WHERE "device_id" = $1`, [
        phone.device.deviceId,
      ]);
    expect(seats).toEqual([{ device_id: phone.device.deviceId, leaving: true }]);
  });

  it('has an SDK member commit the removal of a deleted device on its own (time measured)', async () => {
    const ana = await sdkUser(app, tsMlsEngineFactory);
    const ben = await sdkUser(app, tsMlsEngineFactory);
    const phoneErrors: unknown[] = [];
    const benPhone = await ParleyClient.open({
      url: app.url,
      engine: tsMlsEngineFactory,
      webSocketImpl: WebSocket,
      keyPackageTarget: 5,
      onError: (error: unknown) => phoneErrors.push(error),
    });
    clients.push(ana.client, ben.client, benPhone);
    await benPhone.signIn(ben.username, 'correct horse battery');
    await benPhone.registerDevice('phone');
    await benPhone.connect();
    const chat = await ana.client.createConversation([ben.client.userId ?? '']);
    await eventually(() => benPhone.conversations().length === 1);
    const phoneView = benPhone.conversation(chat.id);
    const phoneMessages = phoneView.messages({ from: 'now' });
    // Settles once the iterator ends; caught at once so that it is never an unhandled rejection.
    const phoneNext = phoneMessages.next().then(
      () => null,
      (error: unknown) => error,
    );
    const phoneId = benPhone.deviceId ?? '';
    expect((await chat.members()).map((m) => m.deviceId)).toContain(phoneId);

    const token = await signIn(app, ben.username);
    const started = Date.now();
    dataOf(await app.gql(DELETE_DEVICE, { id: phoneId }, token));
    await eventually(
      async () => (await chat.members()).every((member) => member.deviceId !== phoneId),
      10_000,
    );
    const removedAfter = Date.now() - started;
    console.log(`deleteDevice -> removal commit processed by a member: ${removedAfter} ms`);
    expect(removedAfter).toBeLessThan(10_000);
    // The commit is in the log, and the roster no longer holds the device.
    const summary = dataOf(
      await app.gql<{ conversation: { members: { deviceId: string }[] } }>(
        `query ($deviceId: ID!, $c: ID!) { conversation(deviceId: $deviceId, conversationId: $c) { members { deviceId } } }`,
        { deviceId: ben.client.deviceId, c: chat.id },
        token,
      ),
    );
    expect(summary.conversation.members.map((m) => m.deviceId)).not.toContain(phoneId);

    // The deleted device's SDK got a typed error, not a hang, and does not reconnect.
    expect(await phoneNext).toBeInstanceOf(DeviceRevokedError);
    await eventually(() => phoneErrors.some((error) => error instanceof DeviceRevokedError), 2000);
    // The group goes on without it.
    const benView = ben.client.conversation(chat.id);
    await chat.send('after the phone');
    await eventually(() => benView.history().some((m) => m.text === 'after the phone'));
  });

  it('has a member that was offline during the deletion remove the device when it reconnects', async () => {
    const anaStore = new MemoryStateStore();
    const ana = await sdkUser(app, tsMlsEngineFactory, { store: anaStore });
    const ben = await sdkUser(app, tsMlsEngineFactory);
    const benPhone = await sdkDevice(app, tsMlsEngineFactory, ben.username);
    clients.push(benPhone);
    const chat = await ana.client.createConversation([ben.client.userId ?? '']);
    await eventually(() => ben.client.conversations().length === 1);
    await eventually(() => benPhone.conversations().length === 1);
    const phoneId = benPhone.deviceId ?? '';
    // Nobody who could commit the removal is online.
    await ana.client.close();
    await ben.client.close();
    dataOf(await app.gql(DELETE_DEVICE, { id: phoneId }, await signIn(app, ben.username)));

    const anaAgain = await sdkClient(app, tsMlsEngineFactory, anaStore);
    clients.push(anaAgain);
    await anaAgain.connect();
    const view = anaAgain.conversation(chat.id);
    await eventually(async () => (await view.members()).every((m) => m.deviceId !== phoneId));
    await view.send('still here');
    await eventually(() => view.history().some((m) => m.text === 'still here'));
  });

  it('signOut revokes the token in use: the next request fails, other tokens still work', async () => {
    const user = await signUp(app);
    const other = await signIn(app, user.username);
    dataOf(await app.gql(ME, {}, user.token));
    expect(
      dataOf(await app.gql<{ signOut: boolean }>(`mutation { signOut }`, {}, user.token)),
    ).toEqual({
      signOut: true,
    });
    const refused = await app.gql(ME, {}, user.token);
    expect(errorCodeOf(refused)).toBe('UNAUTHENTICATED');
    expect(refused.errors?.[0]?.message).toMatch(/revoked/);
    expect(dataOf(await app.gql<{ me: { id: string } }>(ME, {}, other)).me.id).toBe(user.userId);
  });

  it('signOut closes a live socket opened with that token, not one opened with another', async () => {
    const user = await signUp(app);
    const deviceId = await registerDevice(app, user.token);
    const other = await signIn(app, user.username);
    const revoked = await Live.open(app, user.token, deviceId);
    const kept = await Live.open(app, other, deviceId);
    const started = Date.now();
    dataOf(await app.gql(`mutation { signOut }`, {}, user.token));
    await eventually(() => revoked.ending !== null, 1000);
    expect(revoked.ending).toMatchObject({ closeCode: 4401, closeReason: 'Token revoked' });
    console.log(`signOut -> socket closed: ${(revoked.ending?.at ?? 0) - started} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(kept.ending).toBeNull();
    await kept.close();
    await revoked.close();
  });

  it('authenticates a socket’s operations without keeping its token; signOut over it closes it', async () => {
    // The server drops the token from the connection params once the socket is accepted: what
    // the socket does next is authenticated by what the token established, checked afresh.
    const user = await signUp(app);
    const deviceId = await registerDevice(app, user.token);
    const other = await signIn(app, user.username);
    const live = await Live.open(app, user.token, deviceId);
    const kept = await Live.open(app, other, deviceId);
    expect((await live.run(ME)).data).toEqual({ me: { id: user.userId } });
    // Its answer may not make it: the revocation closes the socket at once.
    await live.run(`mutation { signOut }`);
    await eventually(() => live.ending !== null, 1000);
    expect(live.ending).toMatchObject({ closeCode: 4401, closeReason: 'Token revoked' });
    // It revoked the token that opened that socket, and no other.
    expect(errorCodeOf(await app.gql(ME, {}, user.token))).toBe('UNAUTHENTICATED');
    expect((await kept.run(ME)).data).toEqual({ me: { id: user.userId } });
    expect(kept.ending).toBeNull();
    await kept.close();
    await live.close();
  });

  it('closes a live socket when its token expires, not one whose token lives on', async () => {
    const { tokenSecret } = app.config;
    if (tokenSecret === null) throw new Error('the test app has a configured token secret');
    const user = await signUp(app);
    const deviceId = await registerDevice(app, user.token);
    const issuer = 'parley:parley.test';
    // A Parley token of the user that expires in 2–3 s (`exp` is in whole seconds).
    const exp = Math.floor(Date.now() / 1000) + 3;
    const shortLived = await new SignJWT({ gen: 0 })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user.userId)
      .setIssuer(issuer)
      .setAudience(issuer)
      .setIssuedAt()
      .setJti(randomBytes(8).toString('hex'))
      .setExpirationTime(exp)
      .sign(new TextEncoder().encode(tokenSecret));
    const expiring = await Live.open(app, shortLived, deviceId);
    const lasting = await Live.open(app, user.token, deviceId);
    await eventually(() => expiring.ending !== null, 5000);
    expect(expiring.ending).toMatchObject({ closeCode: 4401, closeReason: 'Token expired' });
    const at = expiring.ending?.at ?? 0;
    console.log(`token expiry -> socket closed ${at - exp * 1000} ms after exp`);
    expect(at).toBeGreaterThanOrEqual(exp * 1000);
    expect(at).toBeLessThan(exp * 1000 + 1000);
    expect(lasting.ending).toBeNull();
    await lasting.close();
    await expiring.close();
  });

  it('signOutEverywhere closes the user’s live sockets at once and fails all their tokens; other users are unaffected', async () => {
    const user = await signUp(app);
    const deviceId = await registerDevice(app, user.token);
    const second = await signIn(app, user.username);
    const stranger = await signUp(app);
    const strangerDevice = await registerDevice(app, stranger.token);
    const live = await Live.open(app, second, deviceId);
    const strangerLive = await Live.open(app, stranger.token, strangerDevice);

    const started = Date.now();
    dataOf(await app.gql(`mutation { signOutEverywhere }`, {}, user.token));
    await eventually(() => live.ending !== null, 1000);
    expect(live.ending).toMatchObject({ closeCode: 4401, closeReason: 'Token revoked' });
    console.log(`signOutEverywhere -> socket closed: ${(live.ending?.at ?? 0) - started} ms`);
    for (const token of [user.token, second]) {
      expect(errorCodeOf(await app.gql(ME, {}, token))).toBe('UNAUTHENTICATED');
    }
    expect(errorCodeOf(await app.gql(`mutation { signOut }`, {}, second))).toBe('UNAUTHENTICATED');
    // Other users go on; the user signs in again and goes on too.
    expect(dataOf(await app.gql<{ me: { id: string } }>(ME, {}, stranger.token)).me.id).toBe(
      stranger.userId,
    );
    expect(strangerLive.ending).toBeNull();
    const fresh = await signIn(app, user.username);
    expect(dataOf(await app.gql<{ me: { id: string } }>(ME, {}, fresh)).me.id).toBe(user.userId);
    const again = await Live.open(app, fresh, deviceId);
    await again.close();
    await strangerLive.close();
    await live.close();
  });

  it('SDK: signOutEverywhere on one device ends the other device’s live connection with a typed error', async () => {
    const laptop = await sdkUser(app, tsMlsEngineFactory);
    const phoneErrors: unknown[] = [];
    const phone = await ParleyClient.open({
      url: app.url,
      engine: tsMlsEngineFactory,
      webSocketImpl: WebSocket,
      keyPackageTarget: 5,
      onError: (error: unknown) => phoneErrors.push(error),
    });
    clients.push(laptop.client, phone);
    await phone.signIn(laptop.username, 'correct horse battery');
    await phone.registerDevice('phone');
    await phone.connect();
    const chat: Conversation = await laptop.client.createConversation([]);
    await eventually(() => phone.conversations().length === 1);
    const phoneNext = phone
      .conversation(chat.id)
      .messages({ from: 'now' })
      .next()
      .then(
        () => null,
        (error: unknown) => error,
      );

    await laptop.client.signOutEverywhere();
    await eventually(
      () => phoneErrors.some((error) => error instanceof UnauthenticatedError),
      2000,
    );
    expect(await phoneNext).toBeInstanceOf(UnauthenticatedError);
    // It does not retry with a dead token: one error, no reconnect loop.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(phoneErrors.filter((error) => error instanceof UnauthenticatedError)).toHaveLength(1);
    await expect(phone.conversation(chat.id).send('signed out')).rejects.toBeInstanceOf(
      UnauthenticatedError,
    );
    // The laptop forgot its token; signing in again works.
    await expect(laptop.client.findUser(laptop.username)).rejects.toBeInstanceOf(
      UnauthenticatedError,
    );
    await laptop.client.signIn(laptop.username, 'correct horse battery');
    expect((await laptop.client.findUser(laptop.username)).id).toBe(laptop.client.userId);
  });

  it('verifies a token without a database query once the user’s token state is cached (timed)', async () => {
    const user = await signUp(app);
    const tokens = app.app.get(TokenService);
    const dataSource = app.app.get(DataSource);
    await tokens.authenticate(user.token);
    // Counts what goes to the database about users and tokens while the token is verified again
    // and again (the background sweeps of expired messages and silent call participants run on
    // their own timers meanwhile, and are not the token's work).
    let queries = 0;
    const query = dataSource.query.bind(dataSource);
    dataSource.query = ((...args: Parameters<typeof query>) => {
      if (/"users"|"revoked_tokens"|"server_secrets"/.test(args[0])) queries += 1;
      return query(...args);
    }) as typeof dataSource.query;
    const rounds = 2000;
    const key = new TextEncoder().encode(app.config.tokenSecret ?? '');
    const timed = async (verify: () => Promise<unknown>) => {
      const started = performance.now();
      for (let i = 0; i < rounds; i++) await verify();
      return (performance.now() - started) / rounds;
    };
    let perToken: number;
    let perSignature: number;
    try {
      // Each twice, alternating, and the second round counted: warm-up and load affect both.
      await timed(() => tokens.authenticate(user.token));
      await timed(() => jwtVerify(user.token, key)); // the signature check alone
      perToken = await timed(() => tokens.authenticate(user.token));
      perSignature = await timed(() => jwtVerify(user.token, key));
      console.log(
        `token verification: ${perToken.toFixed(3)} ms each with the revocation check, ` +
          `${perSignature.toFixed(3)} ms for the signature alone`,
      );
      expect(queries).toBe(0);
      // After a revocation the state is read once more (the count sees it), then cached again.
      dataOf(await app.gql(`mutation { signOut }`, {}, await signIn(app, user.username)));
      queries = 0;
      expect((await tokens.authenticate(user.token)).userId).toBe(user.userId);
      expect(queries).toBe(1);
      await tokens.authenticate(user.token);
      expect(queries).toBe(1);
    } finally {
      dataSource.query = query;
    }
  });

  it('refuses a token whose verification is cached at once after signOut and after signOutEverywhere', async () => {
    const user = await signUp(app);
    const tokens = app.app.get(TokenService);
    // Verified, then served from the cache of verified tokens.
    await tokens.authenticate(user.token);
    expect((await tokens.authenticate(user.token)).userId).toBe(user.userId);
    dataOf(await app.gql(`mutation { signOut }`, {}, user.token));
    await expect(tokens.authenticate(user.token)).rejects.toThrow(/revoked/);
    const second = await signIn(app, user.username);
    const third = await signIn(app, user.username);
    await tokens.authenticate(second);
    expect((await tokens.authenticate(second)).userId).toBe(user.userId);
    dataOf(await app.gql(`mutation { signOutEverywhere }`, {}, third));
    await expect(tokens.authenticate(second)).rejects.toThrow(/revoked/);
    expect(errorCodeOf(await app.gql(ME, {}, second))).toBe('UNAUTHENTICATED');
  });

  it('SDK: signOut revokes only this client’s token', async () => {
    const first = await sdkUser(app, tsMlsEngineFactory);
    const second = await sdkDevice(app, tsMlsEngineFactory, first.username);
    clients.push(first.client, second);
    await first.client.signOut();
    await expect(first.client.findUser(first.username)).rejects.toBeInstanceOf(
      UnauthenticatedError,
    );
    expect((await second.findUser(first.username)).id).toBe(first.client.userId);
  });
});

const ISSUER = 'https://id.app.test';
const AUDIENCE = 'parley';

describeE2E('signing out with an app’s own JWTs', () => {
  let app: TestApp;
  const secret = randomBytes(32);
  beforeAll(async () => {
    app = await startTestApp({
      externalJwt: {
        issuer: ISSUER,
        audience: AUDIENCE,
        hs256Secret: secret.toString('hex'),
        jwksUrl: null,
      },
    });
  });
  afterAll(async () => {
    await app.close();
  });

  const seconds = () => Math.floor(Date.now() / 1000);
  const appToken = (sub: string, iat: number, jti?: string) => {
    const jwt = new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(sub)
      .setIssuedAt(iat)
      .setExpirationTime(seconds() + 3600);
    if (jti !== undefined) jwt.setJti(jti);
    return jwt.sign(new TextEncoder().encode(secret.toString('hex')));
  };

  it('signOut revokes that app token (by jti, or by digest without one); signOutEverywhere those issued until then', async () => {
    const sub = `app-user-${Math.random().toString(36).slice(2)}`;
    const withoutJti = await appToken(sub, seconds() - 30);
    const withJti = await appToken(sub, seconds() - 20, 'jti-1');
    const other = await appToken(sub, seconds() - 10);
    for (const token of [withoutJti, withJti, other]) dataOf(await app.gql(ME, {}, token));

    dataOf(await app.gql(`mutation { signOut }`, {}, withoutJti));
    dataOf(await app.gql(`mutation { signOut }`, {}, withJti));
    expect(errorCodeOf(await app.gql(ME, {}, withoutJti))).toBe('UNAUTHENTICATED');
    expect(errorCodeOf(await app.gql(ME, {}, withJti))).toBe('UNAUTHENTICATED');
    dataOf(await app.gql(ME, {}, other));

    dataOf(await app.gql(`mutation { signOutEverywhere }`, {}, other));
    expect(errorCodeOf(await app.gql(ME, {}, other))).toBe('UNAUTHENTICATED');
    // Issued up to the second of the sign-out: refused; issued later: accepted.
    expect(errorCodeOf(await app.gql(ME, {}, await appToken(sub, seconds())))).toBe(
      'UNAUTHENTICATED',
    );
    dataOf(await app.gql(ME, {}, await appToken(sub, seconds() + 2)));
  });
});

if (twoInstancesSkipReason !== undefined)
  console.warn(`revocation across instances skipped: ${twoInstancesSkipReason}`);

describe.skipIf(twoInstancesSkipReason !== undefined)('revocation across two instances', () => {
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    [a, b] = await startTwoInstances();
  });
  afterAll(async () => {
    await b.close();
    await a.close();
  });

  it('ends on B, within 1 s, the subscription of a device deleted on A; B’s members are told', async () => {
    const { conversationId, alice, laptop, phone } = await trio(a);
    const aliceOnB = await Live.open(b, alice.device.token, alice.device.deviceId);
    const phoneOnB = await Live.open(b, phone.device.token, phone.device.deviceId);
    const started = Date.now();
    dataOf(await a.gql(DELETE_DEVICE, { id: phone.device.deviceId }, laptop.device.token));
    await eventually(() => phoneOnB.ending !== null, 1000);
    expect(phoneOnB.ending?.code).toBe('DEVICE_REVOKED');
    console.log(
      `deleteDevice on A -> subscription on B ended: ${(phoneOnB.ending?.at ?? 0) - started} ms`,
    );
    await eventually(
      () =>
        aliceOnB.events.some(
          (e) => e.__typename === 'DeviceRevokedEvent' && e.conversationId === conversationId,
        ),
      1000,
    );
    await aliceOnB.close();
    await phoneOnB.close();
  });

  it('signOutEverywhere on A closes the user’s socket on B and fails their tokens on B', async () => {
    const user = await signUp(a);
    const deviceId = await registerDevice(a, user.token);
    const onB = await signIn(b, user.username);
    dataOf(await b.gql(ME, {}, onB)); // B has the user's state cached now
    const live = await Live.open(b, onB, deviceId);
    const started = Date.now();
    dataOf(await a.gql(`mutation { signOutEverywhere }`, {}, user.token));
    await eventually(() => live.ending !== null, 1000);
    expect(live.ending).toMatchObject({ closeCode: 4401 });
    console.log(
      `signOutEverywhere on A -> socket on B closed: ${(live.ending?.at ?? 0) - started} ms`,
    );
    expect(errorCodeOf(await b.gql(ME, {}, onB))).toBe('UNAUTHENTICATED');
    expect(errorCodeOf(await b.gql(ME, {}, user.token))).toBe('UNAUTHENTICATED');
    await live.close();
  });

  it('signOut on A closes the socket on B opened with that token (B keeps no token), not another', async () => {
    const user = await signUp(a);
    const deviceId = await registerDevice(a, user.token);
    const other = await signIn(b, user.username);
    const revoked = await Live.open(b, user.token, deviceId);
    const kept = await Live.open(b, other, deviceId);
    const started = Date.now();
    dataOf(await a.gql(`mutation { signOut }`, {}, user.token));
    await eventually(() => revoked.ending !== null, 1000);
    expect(revoked.ending).toMatchObject({ closeCode: 4401, closeReason: 'Token revoked' });
    console.log(`signOut on A -> socket on B closed: ${(revoked.ending?.at ?? 0) - started} ms`);
    expect((await kept.run(ME)).data).toEqual({ me: { id: user.userId } });
    expect(kept.ending).toBeNull();
    await kept.close();
    await revoked.close();
  });

  it('signOut on A fails that token on B at once, though B had it cached', async () => {
    const user = await signUp(a);
    dataOf(await b.gql(ME, {}, user.token));
    dataOf(await a.gql(`mutation { signOut }`, {}, user.token));
    await eventually(async () => (await b.gql(ME, {}, user.token)).errors !== undefined, 1000);
    expect(errorCodeOf(await b.gql(ME, {}, user.token))).toBe('UNAUTHENTICATED');
  });
});
