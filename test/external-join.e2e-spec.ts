import {
  type CommitBundle,
  type Conversation,
  type MlsEngineFactory,
  type ParleyClient,
  tsMlsEngineFactory,
} from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import { decodeMlsMessage, encodeMlsMessage } from 'ts-mls';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { b64, dataOf, registerDevice, signUpWithDevice } from './support/graphql.js';
import { eventually, sdkClient, sdkDevice, sdkUser } from './support/sdk-clients.js';
import {
  describeE2E,
  e2eSkipReason,
  startTestApp,
  testDatabase,
  type TestApp,
} from './support/test-app.js';

/**
 * Every device of a user in every conversation of its user, by MLS external commit (RFC 9420
 * §12.4.3.2): a device registered while the user's other devices are offline joins the groups
 * made by either engine from the GroupInfo the server keeps, and reads and sends there; two new
 * devices racing both get in, one per epoch; forged external commits are refused and change
 * nothing.
 */
const openMls = createOpenMlsEngineFactory();
const engines: [string, MlsEngineFactory][] = [
  ['ts-mls', tsMlsEngineFactory],
  ['OpenMLS', openMls],
];

const texts = (conversation: Conversation) => conversation.history().map((message) => message.text);

describeE2E.each(engines)('a %s device joining by external commit', (_name, joinerEngine) => {
  let app: TestApp;
  const clients: ParleyClient[] = [];
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await app.close();
  });

  async function token(username: string): Promise<string> {
    const { signIn } = dataOf(
      await app.gql<{ signIn: { token: string } }>(
        `mutation ($input: CredentialsInput!) { signIn(input: $input) { token } }`,
        { input: { username, password: 'correct horse battery' } },
      ),
    );
    return signIn.token;
  }

  async function joinable(
    bearer: string,
    deviceId: string,
  ): Promise<{ id: string; epoch: number; groupInfo: string }[]> {
    const { joinableConversations } = dataOf(
      await app.gql<{ joinableConversations: { id: string; epoch: number; groupInfo: string }[] }>(
        `query ($d: ID!) { joinableConversations(deviceId: $d) { id epoch groupInfo } }`,
        { d: deviceId },
        bearer,
      ),
    );
    return joinableConversations;
  }

  /**
   * Three conversations of Ana and Ben: a group made by a ts-mls device of Ana, one by an OpenMLS
   * device of hers, and their DM.
   */
  async function setUp() {
    const ana = await sdkUser(app, tsMlsEngineFactory);
    const anaOpenMls = await sdkDevice(app, openMls, ana.username);
    const ben = await sdkUser(app, openMls);
    clients.push(ana.client, anaOpenMls, ben.client);
    const benId = ben.client.userId ?? '';
    const byTsMls = await ana.client.createConversation([benId]);
    const byOpenMls = await anaOpenMls.createConversation([benId]);
    const direct = await ana.client.startDirectConversation(benId);
    for (const id of [byTsMls.id, byOpenMls.id, direct.id]) {
      for (const client of [ana.client, anaOpenMls, ben.client]) {
        await eventually(() => client.conversations().some((c) => c.id === id));
      }
    }
    await byTsMls.send('before the new device');
    await eventually(() => texts(ben.client.conversation(byTsMls.id)).length === 1);
    // Ana's two devices go offline: nobody of hers can send a Welcome.
    await ana.client.close();
    await anaOpenMls.close();
    return { ana, ben, groups: [byTsMls.id, byOpenMls.id, direct.id] };
  }

  it('joins every conversation of its user while the other devices are offline, and talks there', async () => {
    const { ana, ben, groups } = await setUp();
    const heard: string[] = [];
    const laptop = await sdkClient(app, joinerEngine);
    clients.push(laptop);
    await laptop.signIn(ana.username, 'correct horse battery');
    laptop.onJoined((conversation) => heard.push(conversation.id));
    const started = Date.now();
    await laptop.registerDevice('laptop');
    console.log(
      `registerDevice joined ${heard.length} conversations by external commit in ${Date.now() - started} ms`,
    );
    // Registration itself joined them all, and said so.
    expect([...heard].sort()).toEqual([...groups].sort());
    await laptop.connect();
    for (const id of groups) {
      const mine = laptop.conversation(id);
      const bens = ben.client.conversation(id);
      await eventually(async () => (await bens.members()).length === 4);
      expect((await mine.members()).length).toBe(4);
      await mine.send(`hello from the new device in ${id}`);
      await eventually(() => texts(bens).includes(`hello from the new device in ${id}`));
      await bens.send(`hello back in ${id}`);
      await eventually(() => texts(mine).includes(`hello back in ${id}`));
    }
    // Nothing to join any more.
    const bearer = await token(ana.username);
    expect(await joinable(bearer, laptop.deviceId ?? '')).toEqual([]);
    // A device that left never rejoins by itself, though its user is still there.
    const left = groups[0] ?? '';
    await laptop.conversation(left).leave();
    await eventually(async () => (await ben.client.conversation(left).members()).length === 3);
    await laptop.sync();
    expect(await joinable(bearer, laptop.deviceId ?? '')).toEqual([]);
    expect(laptop.conversation(left).status).not.toBe('active');
  });

  it('joins live, without a sync, a conversation that appears after the device registered', async () => {
    // Ben (a bare device driven here step by step) claims Ana's key packages — only her first
    // device has any — then her second device registers and goes live, then Ben commits.
    const ana = await sdkUser(app, tsMlsEngineFactory);
    clients.push(ana.client);
    const ben = await signUpWithDevice(app);
    const engine = await tsMlsEngineFactory.create(ben.identity);
    const groupId = crypto.getRandomValues(new Uint8Array(32));
    const { groupInfo } = await engine.createGroup(groupId);
    const { createConversation } = dataOf(
      await app.gql<{ createConversation: { id: string } }>(
        `mutation ($input: CreateConversationInput!) { createConversation(input: $input) { id } }`,
        {
          input: {
            deviceId: ben.deviceId,
            groupId: b64(groupId),
            kind: 'GROUP',
            groupInfo: b64(groupInfo ?? new Uint8Array()),
          },
        },
        ben.token,
      ),
    );
    const { claimKeyPackages } = dataOf(
      await app.gql<{ claimKeyPackages: { keyPackages: { keyPackage: string }[] } }>(
        `mutation ($input: ClaimKeyPackagesInput!) {
          claimKeyPackages(input: $input) { keyPackages { keyPackage } }
        }`,
        { input: { deviceId: ben.deviceId, userIds: [ana.client.userId] } },
        ben.token,
      ),
    );
    expect(claimKeyPackages.keyPackages).toHaveLength(1);
    const phone = await sdkDevice(app, joinerEngine, ana.username);
    clients.push(phone);
    expect(phone.conversations()).toEqual([]);
    const outcome = await engine.addMembers(
      groupId,
      claimKeyPackages.keyPackages.map((claimed) => Buffer.from(claimed.keyPackage, 'base64')),
      async (bundle) => {
        dataOf(
          await app.gql(
            `mutation ($input: SubmitCommitBundleInput!) { submitCommitBundle(input: $input) { seq } }`,
            {
              input: {
                deviceId: ben.deviceId,
                conversationId: createConversation.id,
                commit: b64(bundle.commit),
                groupInfo: b64(bundle.groupInfo),
                welcome: b64(bundle.welcome ?? new Uint8Array()),
              },
            },
            ben.token,
          ),
        );
        return 'accepted';
      },
    );
    expect(outcome).toBe('accepted');
    // The first device by its Welcome, the second by external commit on the live event.
    await eventually(() => ana.client.conversations().some((c) => c.id === createConversation.id));
    await eventually(() => phone.conversations().some((c) => c.id === createConversation.id));
    await phone.conversation(createConversation.id).send('joined live');
    await eventually(() =>
      texts(ana.client.conversation(createConversation.id)).includes('joined live'),
    );
  });

  it('answers an external commit sent again (its answer lost) as the first time', async () => {
    const { ana, groups } = await setUp();
    const id = groups[1] ?? '';
    const anaToken = await token(ana.username);
    const device = await registerDevice(app, anaToken);
    const [target] = (await joinable(anaToken, device.deviceId)).filter((c) => c.id === id);
    if (target === undefined) throw new Error('the group is not joinable');
    const engine = await joinerEngine.create(device.identity);
    const answers: unknown[] = [];
    const { outcome } = await engine.joinByExternalCommit(
      Buffer.from(target.groupInfo, 'base64'),
      async (bundle) => {
        const submit = async () =>
          dataOf(
            await app.gql<{ submitCommitBundle: Record<string, unknown> }>(
              `mutation ($input: SubmitCommitBundleInput!) {
                submitCommitBundle(input: $input) { seq epoch addedDeviceIds }
              }`,
              {
                input: {
                  deviceId: device.deviceId,
                  conversationId: id,
                  commit: b64(bundle.commit),
                  groupInfo: b64(bundle.groupInfo),
                },
              },
              anaToken,
            ),
          ).submitCommitBundle;
        answers.push(await submit(), await submit());
        return 'accepted';
      },
    );
    expect(outcome).toBe('accepted');
    expect(answers[1]).toEqual(answers[0]);
    expect(answers[0]).toMatchObject({
      epoch: target.epoch + 1,
      addedDeviceIds: [device.deviceId],
    });
    // Joined once: nothing left to join, and the device is not offered the conversation again.
    expect((await joinable(anaToken, device.deviceId)).map((c) => c.id)).not.toContain(id);
  });

  it('lets two new devices racing to join both get in, one per epoch', async () => {
    const { ana, ben, groups } = await setUp();
    const benToken = await token(ben.username);
    const epochOf = async (id: string): Promise<number> => {
      const { conversation } = dataOf(
        await app.gql<{ conversation: { epoch: number } }>(
          `query ($d: ID!, $c: ID!) { conversation(deviceId: $d, conversationId: $c) { epoch } }`,
          { d: ben.client.deviceId, c: id },
          benToken,
        ),
      );
      return conversation.epoch;
    };
    const before = await Promise.all(groups.map(epochOf));
    const racers = await Promise.all([
      sdkDevice(app, joinerEngine, ana.username),
      sdkDevice(app, joinerEngine, ana.username),
    ]);
    clients.push(...racers);
    for (const racer of racers) {
      await eventually(async () => {
        await racer.sync();
        return groups.every((id) => racer.conversations().some((c) => c.id === id));
      }, 60_000);
    }
    for (const [index, id] of groups.entries()) {
      const bens = ben.client.conversation(id);
      await eventually(async () => (await bens.members()).length === 5);
      // One commit per join: two epochs, whoever lost a race retried from the fresh GroupInfo.
      expect(await epochOf(id)).toBe((before[index] ?? 0) + 2);
      await racers[0].conversation(id).send(`first racer in ${id}`);
      await racers[1].conversation(id).send(`second racer in ${id}`);
      await eventually(
        () =>
          texts(bens).includes(`first racer in ${id}`) &&
          texts(bens).includes(`second racer in ${id}`),
      );
    }
  });

  it('refuses forged external commits with typed codes, changing nothing', async () => {
    const { ana, ben, groups } = await setUp();
    const id = groups[0] ?? '';
    const anaToken = await token(ana.username);
    // A raw device of Ana's, to read the GroupInfo and to try forgeries with.
    const device = await registerDevice(app, anaToken);
    const [target] = (await joinable(anaToken, device.deviceId)).filter((c) => c.id === id);
    if (target === undefined) throw new Error('the group is not joinable');
    const groupInfo = Buffer.from(target.groupInfo, 'base64');

    async function attempt(
      bearer: string,
      deviceId: string,
      identity: string,
      tamper: (bundle: CommitBundle) => CommitBundle = (bundle) => bundle,
    ): Promise<Record<string, unknown> | undefined> {
      const engine = await joinerEngine.create(identity);
      let refusal: Record<string, unknown> | undefined;
      await engine.joinByExternalCommit(groupInfo, async (bundle) => {
        const forged = tamper(bundle);
        const response = await app.gql(
          `mutation ($input: SubmitCommitBundleInput!) { submitCommitBundle(input: $input) { seq } }`,
          {
            input: {
              deviceId,
              conversationId: id,
              commit: b64(forged.commit),
              groupInfo: b64(forged.groupInfo),
            },
          },
          bearer,
        );
        refusal = response.errors?.[0]?.extensions;
        return 'rejected';
      });
      return refusal;
    }

    // A device whose user is not in the conversation.
    const cy = await sdkUser(app, tsMlsEngineFactory);
    clients.push(cy.client);
    const cyToken = await token(cy.username);
    const cyDevice = await registerDevice(app, cyToken);
    expect(await attempt(cyToken, cyDevice.deviceId, cyDevice.identity)).toMatchObject({
      code: 'FORBIDDEN',
      reason: 'NOT_A_MEMBER_USER',
    });
    // Ana's device claiming another user's identity (Ben's).
    const benIdentity = ben.client.identity ?? '';
    expect(await attempt(anaToken, device.deviceId, benIdentity)).toMatchObject({
      code: 'INVALID_COMMIT',
      reason: 'WRONG_IDENTITY',
    });
    // Ana's own device with its own identity, but a byte of the commit's signature flipped (the
    // signature sits right before the confirmation tag, a 1-byte length and 32 bytes).
    expect(
      await attempt(anaToken, device.deviceId, device.identity, (bundle) => {
        const commit = Uint8Array.from(bundle.commit);
        const at = commit.length - 33 - 10;
        commit[at] = (commit[at] ?? 0) ^ 0x01;
        return { ...bundle, commit };
      }),
    ).toMatchObject({ code: 'INVALID_COMMIT', reason: 'BAD_SIGNATURE' });
    // The same without its ExternalInit proposal.
    expect(
      await attempt(anaToken, device.deviceId, device.identity, (bundle) => {
        const [message] = decodeMlsMessage(bundle.commit, 0) ?? [];
        if (message?.wireformat !== 'mls_public_message') throw new Error('not a PublicMessage');
        const { content } = message.publicMessage;
        if (content.contentType !== 'commit') throw new Error('not a commit');
        content.commit.proposals = [];
        return { ...bundle, commit: encodeMlsMessage(message) };
      }),
    ).toMatchObject({ code: 'INVALID_COMMIT', reason: 'MISSING_EXTERNAL_INIT' });
    // Nothing changed: same epoch, same GroupInfo, still joinable, roster unchanged.
    const [after] = (await joinable(anaToken, device.deviceId)).filter((c) => c.id === id);
    expect(after?.epoch).toBe(target.epoch);
    expect(after?.groupInfo).toBe(target.groupInfo);
    expect((await ben.client.conversation(id).members()).length).toBe(3);
  });
});

const cliRoot = new URL('..', import.meta.url).pathname;
const cliMain = join(cliRoot, 'apps/cli/dist/main.js');

// The CLI runs compiled, as users run it (built once by test/support/build-once.ts); it does not
// depend on the server's database, so it runs in the PGlite project only.
describe.skipIf(e2eSkipReason !== undefined || testDatabase === 'postgres')(
  'parley register on a new device',
  () => {
    let app: TestApp;
    let home: string;
    beforeAll(async () => {
      const buildFailure = inject('buildFailure');
      if (buildFailure !== null) throw new Error(buildFailure);
      app = await startTestApp();
      home = await mkdtemp(join(tmpdir(), 'parley-external-join-'));
    }, 300_000);
    afterAll(async () => {
      await app.close();
      await rm(home, { recursive: true, force: true });
    });

    const parley = async (profile: string, ...args: string[]) => {
      const { stdout } = await promisify(execFile)(
        'node',
        [cliMain, '--state', join(home, `${profile}.state`), '--json', ...args],
        {
          env: {
            ...process.env,
            PARLEY_SERVER: app.url,
            PARLEY_PASSPHRASE: `passphrase of ${profile}`,
            PARLEY_PASSWORD: 'correct horse battery',
          },
        },
      );
      return stdout
        .trim()
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    };

    it('says which conversations the new device joined, and it reads and sends there', async () => {
      for (const name of ['ana', 'ben']) {
        await parley(name, 'signup', name);
        await parley(name, 'register', `${name}'s terminal`);
      }
      const [created] = await parley('ana', 'create', 'ben');
      const conversationId = String(created?.conversationId);
      await parley('ana', 'send', conversationId, 'before the laptop');
      // Ana's first terminal is not running: the laptop joins by external commit.
      await parley('laptop', 'signin', 'ana');
      const [registered] = await parley('laptop', 'register', 'ana laptop');
      expect(registered?.joined).toEqual([{ id: conversationId, kind: 'GROUP' }]);
      await parley('laptop', 'send', conversationId, 'from the laptop');
      await eventually(async () => {
        const history = await parley('ben', 'history', conversationId);
        return history.some((message) => message.text === 'from the laptop');
      }, 30_000);
      const history = await parley('laptop', 'history', conversationId);
      expect(history.map((message) => message.text)).toContain('from the laptop');
    });
  },
);
