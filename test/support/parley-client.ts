import { randomBytes } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { b64, dataOf, signUpWithDevice, type TestDevice } from './graphql.js';
import { MlsGroup, MlsMember } from '@parley/mls-member';
import type { GraphqlEndpoint, GraphqlResponse } from './test-app.js';

/** A log entry as the tests read it. */
export interface Entry {
  seq: number;
  kind: 'COMMIT' | 'APPLICATION';
  epoch: number;
  senderDeviceId: string;
  message: string;
}

/** A live event as the tests read it (fields of every union member, flattened). */
export interface LiveEvent {
  __typename:
    | 'SubscribedEvent'
    | 'LogEntryEvent'
    | 'RosterEvent'
    | 'WelcomeEvent'
    | 'KeyPackagesLowEvent'
    | 'LeaveEvent'
    | 'CallEvent';
  entry?: Entry & { conversationId: string };
  conversationId?: string;
  seq?: number;
  addedDeviceIds?: string[];
  removedDeviceIds?: string[];
  welcomeId?: string;
  commitSeq?: number;
  available?: number;
  leavingDeviceId?: string;
  callChange?: 'STARTED' | 'JOINED' | 'LEFT' | 'ENDED';
  callDeviceId?: string;
  call?: {
    id: string;
    conversationId: string;
    media: 'AUDIO' | 'VIDEO';
    endedAt: string | null;
    participants: { deviceId: string; userId: string }[];
  };
}

const ENTRY_FIELDS = 'seq kind epoch senderDeviceId message';
export const EVENTS_SUBSCRIPTION = `subscription ($deviceId: ID!) {
  events(deviceId: $deviceId) {
    __typename
    ... on SubscribedEvent { subscribedDeviceId }
    ... on LogEntryEvent { entry { conversationId ${ENTRY_FIELDS} } }
    ... on RosterEvent { conversationId seq epoch addedDeviceIds removedDeviceIds }
    ... on WelcomeEvent { welcomeId conversationId epoch commitSeq }
    ... on KeyPackagesLowEvent { deviceId available lowWater }
    ... on LeaveEvent { conversationId leavingDeviceId }
    ... on CallEvent {
      callChange callDeviceId
      call { id conversationId media endedAt participants { deviceId userId } }
    }
  }
}`;

/** A live subscription collecting events, with a way to wait for one. */
export class Subscription {
  readonly events: LiveEvent[] = [];
  readonly errors: unknown[] = [];
  private waiters: (() => void)[] = [];

  constructor(private readonly client: Client) {}

  /** @internal */
  push(event: LiveEvent): void {
    this.events.push(event);
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** Waits until an event satisfies `match` (or fails after `ms`). */
  async waitFor(match: (event: LiveEvent) => boolean, ms = 10_000): Promise<LiveEvent> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.events.find(match);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no matching event within ${ms} ms; got ${JSON.stringify(this.events)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Closes the socket. */
  async close(): Promise<void> {
    await this.client.dispose();
  }
}

/** A device running MLS against a Parley server: account, device, ts-mls client and API calls. */
export class ParleyDevice implements TestDevice {
  private constructor(
    private readonly app: GraphqlEndpoint,
    readonly userId: string,
    readonly token: string,
    readonly deviceId: string,
    readonly identity: string,
    readonly mls: MlsMember,
  ) {}

  /** Signs up a new user with one device and an MLS client. */
  static async create(app: GraphqlEndpoint): Promise<ParleyDevice> {
    const device = await signUpWithDevice(app);
    return new ParleyDevice(
      app,
      device.userId,
      device.token,
      device.deviceId,
      device.identity,
      await MlsMember.create(device.identity),
    );
  }

  /** Another device of an existing user. */
  static async another(app: GraphqlEndpoint, of: ParleyDevice): Promise<ParleyDevice> {
    const { registerDevice } = dataOf(
      await app.gql<{ registerDevice: { id: string; identity: string } }>(
        `mutation { registerDevice { id identity } }`,
        {},
        of.token,
      ),
    );
    return new ParleyDevice(
      app,
      of.userId,
      of.token,
      registerDevice.id,
      registerDevice.identity,
      await MlsMember.create(registerDevice.identity),
    );
  }

  /** The same device (and MLS state) talking to another server instance. */
  via(app: GraphqlEndpoint): ParleyDevice {
    return new ParleyDevice(app, this.userId, this.token, this.deviceId, this.identity, this.mls);
  }

  /** A GraphQL call as this device's user. */
  gql<T>(query: string, variables: Record<string, unknown> = {}): Promise<GraphqlResponse<T>> {
    return this.app.gql<T>(query, { deviceId: this.deviceId, ...variables }, this.token);
  }

  /** Uploads `count` fresh key packages. */
  async uploadKeyPackages(count: number): Promise<void> {
    const keyPackages = (await this.mls.keyPackages(count)).map(b64);
    dataOf(
      await this.gql(
        `mutation ($deviceId: ID!, $keyPackages: [Bytes!]!) {
          uploadKeyPackages(input: { deviceId: $deviceId, keyPackages: $keyPackages }) { available }
        }`,
        { keyPackages },
      ),
    );
  }

  /** Claims one key package per device of the users (MLSMessage bytes). */
  async claim(userIds: string[]): Promise<Uint8Array[]> {
    const { claimKeyPackages } = dataOf(
      await this.gql<{ claimKeyPackages: { keyPackages: { keyPackage: string }[] } }>(
        `mutation ($deviceId: ID!, $userIds: [ID!]!) {
          claimKeyPackages(input: { deviceId: $deviceId, userIds: $userIds }) { keyPackages { keyPackage } }
        }`,
        { userIds },
      ),
    );
    return claimKeyPackages.keyPackages.map((kp) => Buffer.from(kp.keyPackage, 'base64'));
  }

  /**
   * Creates an MLS group and registers it as a conversation, with its epoch-0 GroupInfo or (as
   * clients that cannot export one do) with only the ciphersuite.
   */
  async createConversation(
    options: { withGroupInfo?: boolean } = {},
  ): Promise<{ conversationId: string; group: MlsGroup }> {
    const group = await this.mls.createGroup(randomBytes(16));
    const start =
      options.withGroupInfo === false
        ? { ciphersuite: 1 }
        : { groupInfo: b64(await group.groupInfo()) };
    const { createConversation } = dataOf(
      await this.gql<{ createConversation: { id: string } }>(
        `mutation ($deviceId: ID!, $groupId: Bytes!, $groupInfo: Bytes, $ciphersuite: Int) {
          createConversation(input: { deviceId: $deviceId, groupId: $groupId, groupInfo: $groupInfo,
                                       ciphersuite: $ciphersuite }) { id }
        }`,
        { groupId: b64(group.groupId), ...start },
      ),
    );
    return { conversationId: createConversation.id, group };
  }

  /** Submits a commit bundle as is; the raw response, for tests of rejections. */
  submit(
    conversationId: string,
    bundle: { commit: Uint8Array; groupInfo: Uint8Array; welcome?: Uint8Array | undefined },
  ): Promise<GraphqlResponse<{ submitCommitBundle: { seq: number; epoch: number } }>> {
    return this.gql(
      `mutation ($deviceId: ID!, $conversationId: ID!, $commit: Bytes!, $groupInfo: Bytes!, $welcome: Bytes) {
        submitCommitBundle(input: { deviceId: $deviceId, conversationId: $conversationId, commit: $commit,
                                    groupInfo: $groupInfo, welcome: $welcome }) { seq epoch }
      }`,
      {
        conversationId,
        commit: b64(bundle.commit),
        groupInfo: b64(bundle.groupInfo),
        welcome: bundle.welcome === undefined ? null : b64(bundle.welcome),
      },
    );
  }

  /** Sends an application message; the raw response. */
  send(
    conversationId: string,
    message: Uint8Array,
  ): Promise<GraphqlResponse<{ sendMessage: { seq: number } }>> {
    return this.gql(
      `mutation ($deviceId: ID!, $conversationId: ID!, $message: Bytes!) {
        sendMessage(input: { deviceId: $deviceId, conversationId: $conversationId, message: $message }) { seq }
      }`,
      { conversationId, message: b64(message) },
    );
  }

  /** Encrypts and sends a text; returns its sequence number. */
  async say(group: MlsGroup, conversationId: string, text: string): Promise<number> {
    return dataOf(await this.send(conversationId, await group.encrypt(text))).sendMessage.seq;
  }

  /** One page of the log; the raw response. */
  page(
    conversationId: string,
    after = 0,
    first = 100,
  ): Promise<
    GraphqlResponse<{
      messages: {
        gap: { fromSeq: number; toSeq: number } | null;
        entries: Entry[];
        hasMore: boolean;
        lastSeq: number;
      };
    }>
  > {
    return this.gql(
      `query ($deviceId: ID!, $conversationId: ID!, $after: SafeInt!, $first: Int!) {
        messages(deviceId: $deviceId, conversationId: $conversationId, after: $after, first: $first) {
          gap { fromSeq toSeq } entries { ${ENTRY_FIELDS} } hasMore lastSeq
        }
      }`,
      { conversationId, after, first },
    );
  }

  /** Every log entry after `after`, following pages. */
  async entries(conversationId: string, after = 0): Promise<Entry[]> {
    const all: Entry[] = [];
    let cursor = after;
    for (;;) {
      const { messages } = dataOf(await this.page(conversationId, cursor));
      all.push(...messages.entries);
      const last = messages.entries.at(-1);
      if (!messages.hasMore || last === undefined) return all;
      cursor = last.seq;
    }
  }

  /** Joins from the oldest waiting Welcome and acknowledges it; returns the group and commit seq. */
  async joinFromWelcome(): Promise<{ group: MlsGroup; conversationId: string; commitSeq: number }> {
    const { welcomes } = dataOf(
      await this.gql<{
        welcomes: { id: string; conversationId: string; commitSeq: number; welcome: string }[];
      }>(
        `query ($deviceId: ID!) { welcomes(deviceId: $deviceId) { id conversationId commitSeq welcome } }`,
      ),
    );
    const [welcome] = welcomes;
    if (welcome === undefined) throw new Error('no Welcome waiting');
    const group = await this.mls.joinFromWelcome(Buffer.from(welcome.welcome, 'base64'));
    dataOf(
      await this.gql(
        `mutation ($deviceId: ID!, $welcomeId: ID!) { acknowledgeWelcome(deviceId: $deviceId, welcomeId: $welcomeId) }`,
        {
          welcomeId: welcome.id,
        },
      ),
    );
    return { group, conversationId: welcome.conversationId, commitSeq: welcome.commitSeq };
  }

  /** Reads and processes the log after `after`; returns decrypted texts and the new cursor. */
  async catchUp(
    group: MlsGroup,
    conversationId: string,
    after: number,
  ): Promise<{ texts: string[]; cursor: number }> {
    const texts: string[] = [];
    let cursor = after;
    for (const entry of await this.entries(conversationId, after)) {
      const processed = await group.processMessage(Buffer.from(entry.message, 'base64'));
      if (processed.kind === 'application')
        texts.push(Buffer.from(processed.plaintext).toString('utf8'));
      cursor = entry.seq;
    }
    return { texts, cursor };
  }

  /** Tries to subscribe for `deviceId` with this user's token (or none); the errors it got. */
  async subscribeAs(deviceId: string, token: string | null = this.token): Promise<unknown[]> {
    const client = createClient({
      url: this.app.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: token === null ? {} : { authorization: `Bearer ${token}` },
      retryAttempts: 0,
    });
    try {
      return await new Promise<unknown[]>((resolve) => {
        client.subscribe(
          { query: EVENTS_SUBSCRIPTION, variables: { deviceId } },
          {
            next: (result) => {
              resolve([...(result.errors ?? [])]);
            },
            error: (error: unknown) => {
              resolve(Array.isArray(error) ? error : [error]);
            },
            complete: () => {
              resolve([]);
            },
          },
        );
      });
    } finally {
      await client.dispose();
    }
  }

  /** Opens the device's live subscription over graphql-ws and waits until it is established. */
  async subscribe(): Promise<Subscription> {
    const url = this.app.url.replace(/^http/, 'ws');
    const client = createClient({
      url,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${this.token}` },
      retryAttempts: 0,
    });
    const subscription = new Subscription(client);
    client.subscribe<{ events: LiveEvent }>(
      { query: EVENTS_SUBSCRIPTION, variables: { deviceId: this.deviceId } },
      {
        next: (result) => {
          if (result.errors !== undefined) subscription.errors.push(...result.errors);
          else if (result.data != null) subscription.push(result.data.events);
        },
        error: (error: unknown) => subscription.errors.push(error),
        complete: () => undefined,
      },
    );
    // The server's first event says the device's channels are live.
    await subscription.waitFor((event) => event.__typename === 'SubscribedEvent');
    return subscription;
  }
}

/** A device of a group made by {@link buildGroup}. */
export interface GroupMember {
  device: ParleyDevice;
  group: MlsGroup;
  /** The seq of the commit that added it (0 for the creator of a group of one). */
  cursor: number;
}

/**
 * A group of `size` new users' devices: the first creates it and adds the others in one commit,
 * through key packages it claims (each keeps a spare); they join from their Welcomes.
 */
export async function buildGroup(
  app: GraphqlEndpoint,
  size: number,
): Promise<{ conversationId: string; members: GroupMember[] }> {
  const devices = await Promise.all(Array.from({ length: size }, () => ParleyDevice.create(app)));
  const [creator, ...others] = devices as [ParleyDevice, ...ParleyDevice[]];
  await Promise.all(others.map((device) => device.uploadKeyPackages(2)));
  const { conversationId, group } = await creator.createConversation();
  const members: GroupMember[] = [{ device: creator, group, cursor: 0 }];
  if (others.length === 0) return { conversationId, members };
  const bundle = await group.addMembers(await creator.claim(others.map((d) => d.userId)));
  const { submitCommitBundle } = dataOf(await creator.submit(conversationId, bundle));
  group.confirmCommit();
  members[0] = { device: creator, group, cursor: submitCommitBundle.seq };
  for (const device of others) {
    const joined = await device.joinFromWelcome();
    if (joined.conversationId !== conversationId) {
      throw new Error(`${device.deviceId} was welcomed to another conversation`);
    }
    members.push({ device, group: joined.group, cursor: joined.commitSeq });
  }
  return { conversationId, members };
}
