/**
 * A light Parley client for the benchmarks: accounts, devices, key packages and commit bundles
 * over GraphQL/HTTP, with the raw ts-mls member of the suites (@parley/mls-member) for MLS.
 * It does not import the test helpers built on vitest, so the benchmarks run on plain Node.
 */
import { randomBytes } from 'node:crypto';
import { type CommitBundle, MlsGroup, MlsMember } from '@parley/mls-member';

/** Bytes as the API's Bytes scalar wants them. */
export const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

interface GraphqlResponse<T> {
  data?: T | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** A GraphQL call that answered with errors. */
export class GraphqlCallError extends Error {
  constructor(readonly errors: NonNullable<GraphqlResponse<unknown>['errors']>) {
    super(errors.map((error) => `${String(error.extensions?.code)}: ${error.message}`).join('; '));
  }
}

/** Posts one GraphQL operation and returns its data, or throws GraphqlCallError. */
export async function gql<T>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  token?: string,
): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as GraphqlResponse<T>;
  if (body.errors !== undefined) throw new GraphqlCallError(body.errors);
  if (body.data == null) throw new Error('GraphQL answered without data');
  return body.data;
}

/** The sendMessage mutation as the load generator posts it. */
export const SEND_MESSAGE = `mutation ($deviceId: ID!, $conversationId: ID!, $message: Bytes!) {
  sendMessage(input: { deviceId: $deviceId, conversationId: $conversationId, message: $message }) { seq }
}`;

/** The live subscription with every field a client reads (the e2e suites' selection). */
export const EVENTS_SUBSCRIPTION = `subscription ($deviceId: ID!) {
  events(deviceId: $deviceId) {
    __typename
    ... on SubscribedEvent { subscribedDeviceId }
    ... on LogEntryEvent { entry { conversationId seq kind epoch senderDeviceId createdAt message } }
    ... on RosterEvent { conversationId seq epoch addedDeviceIds removedDeviceIds }
    ... on WelcomeEvent { welcomeId conversationId epoch commitSeq }
    ... on KeyPackagesLowEvent { deviceId available lowWater }
  }
}`;

/** A user's device with its ts-mls client. */
export class BenchDevice {
  private constructor(
    private readonly url: string,
    readonly userId: string,
    readonly token: string,
    readonly deviceId: string,
    readonly identity: string,
    readonly mls: MlsMember,
  ) {}

  /** Signs up a new user (scrypt on the server, ~50 ms) and registers its first device. */
  static async signUp(url: string): Promise<BenchDevice> {
    const { signUp } = await gql<{ signUp: { token: string; user: { id: string } } }>(
      url,
      `mutation ($input: CredentialsInput!) { signUp(input: $input) { token user { id } } }`,
      {
        input: {
          username: `bench_${randomBytes(6).toString('hex')}`,
          password: 'correct horse battery',
        },
      },
    );
    return BenchDevice.register(url, signUp.user.id, signUp.token);
  }

  /** Another device of this device's user. */
  another(): Promise<BenchDevice> {
    return BenchDevice.register(this.url, this.userId, this.token);
  }

  private static async register(url: string, userId: string, token: string) {
    const { registerDevice } = await gql<{ registerDevice: { id: string; identity: string } }>(
      url,
      `mutation { registerDevice(input: { name: "bench" }) { id identity } }`,
      {},
      token,
    );
    return new BenchDevice(
      url,
      userId,
      token,
      registerDevice.id,
      registerDevice.identity,
      await MlsMember.create(registerDevice.identity),
    );
  }

  /** A GraphQL call as this device (its id is passed as $deviceId). */
  gql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    return gql<T>(this.url, query, { deviceId: this.deviceId, ...variables }, this.token);
  }

  /** Makes and uploads `count` key packages, in uploads of at most 100. */
  async uploadKeyPackages(count: number): Promise<void> {
    for (let done = 0; done < count; done += 100) {
      const keyPackages = (await this.mls.keyPackages(Math.min(100, count - done))).map(b64);
      await this.gql(
        `mutation ($deviceId: ID!, $keyPackages: [Bytes!]!) {
          uploadKeyPackages(input: { deviceId: $deviceId, keyPackages: $keyPackages }) { available }
        }`,
        { keyPackages },
      );
    }
  }

  /** Claims one key package per device of each user (MLSMessage bytes). */
  async claim(userIds: string[]): Promise<Uint8Array[]> {
    const { claimKeyPackages } = await this.gql<{
      claimKeyPackages: { keyPackages: { keyPackage: string }[] };
    }>(
      `mutation ($deviceId: ID!, $userIds: [ID!]!) {
        claimKeyPackages(input: { deviceId: $deviceId, userIds: $userIds }) { keyPackages { keyPackage } }
      }`,
      { userIds },
    );
    return claimKeyPackages.keyPackages.map((kp) => Buffer.from(kp.keyPackage, 'base64'));
  }

  /** Creates an MLS group and registers it as a conversation. */
  async createConversation(): Promise<{ conversationId: string; group: MlsGroup }> {
    const group = await this.mls.createGroup(randomBytes(16));
    const { createConversation } = await this.gql<{ createConversation: { id: string } }>(
      `mutation ($deviceId: ID!, $groupId: Bytes!, $groupInfo: Bytes!) {
        createConversation(input: { deviceId: $deviceId, groupId: $groupId, groupInfo: $groupInfo }) { id }
      }`,
      { groupId: b64(group.groupId), groupInfo: b64(await group.groupInfo()) },
    );
    return { conversationId: createConversation.id, group };
  }

  /** The submitCommitBundle request body, ready to post (so that its encoding is not timed). */
  submitBody(conversationId: string, bundle: CommitBundle): string {
    return JSON.stringify({
      query: `mutation ($deviceId: ID!, $conversationId: ID!, $commit: Bytes!, $groupInfo: Bytes!, $welcome: Bytes) {
        submitCommitBundle(input: { deviceId: $deviceId, conversationId: $conversationId, commit: $commit,
                                    groupInfo: $groupInfo, welcome: $welcome }) { seq epoch }
      }`,
      variables: {
        deviceId: this.deviceId,
        conversationId,
        commit: b64(bundle.commit),
        groupInfo: b64(bundle.groupInfo),
        welcome: bundle.welcome === undefined ? null : b64(bundle.welcome),
      },
    });
  }

  /** Posts a prepared body; resolves with the data or throws GraphqlCallError. */
  async post<T>(body: string): Promise<T> {
    const response = await fetch(this.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${this.token}` },
      body,
    });
    const parsed = (await response.json()) as GraphqlResponse<T>;
    if (parsed.errors !== undefined) throw new GraphqlCallError(parsed.errors);
    if (parsed.data == null) throw new Error('GraphQL answered without data');
    return parsed.data;
  }

  /** Submits a commit bundle and adopts it once accepted. */
  async commit(conversationId: string, group: MlsGroup, bundle: CommitBundle): Promise<void> {
    await this.post(this.submitBody(conversationId, bundle));
    group.confirmCommit();
  }

  /** Joins from the oldest waiting Welcome and acknowledges it. */
  async joinFromWelcome(): Promise<MlsGroup> {
    const { welcomes } = await this.gql<{ welcomes: { id: string; welcome: string }[] }>(
      `query ($deviceId: ID!) { welcomes(deviceId: $deviceId) { id welcome } }`,
    );
    const [welcome] = welcomes;
    if (welcome === undefined) throw new Error('no Welcome waiting');
    const group = await this.mls.joinFromWelcome(Buffer.from(welcome.welcome, 'base64'));
    await this.gql(
      `mutation ($deviceId: ID!, $welcomeId: ID!) { acknowledgeWelcome(deviceId: $deviceId, welcomeId: $welcomeId) }`,
      { welcomeId: welcome.id },
    );
    return group;
  }
}
