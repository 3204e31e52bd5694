import {
  type Conversation,
  MemoryStateStore,
  type MlsEngineFactory,
  ParleyClient,
  tsMlsEngineFactory,
} from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import WebSocket from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually } from './support/sdk-clients.js';
import { describeE2E, startTestApp, type TestApp } from './support/test-app.js';

/**
 * Membership churn in one group of seven devices of both engines, most of them OpenMLS: again
 * and again a member is removed and right after that another one leaves, while the others keep
 * sending and one OpenMLS device restarts from its saved state. Every device that stays must
 * converge — same members, same epoch secrets, every message of the round decrypted — and no
 * device may report an error, FUTURE_EPOCH least of all: the OpenMLS engine once reported it
 * while catching up under this churn, because a state saved while the other engines kept the
 * shared store writer busy could miss the newest epoch (libs/engine-openmls/src/store.ts).
 */
const openMls = createOpenMlsEngineFactory();
const ROUNDS = Number(process.env.PARLEY_CHURN_ROUNDS ?? 4);
const DEVICES = 7;

interface Device {
  name: string;
  engine: MlsEngineFactory;
  store: MemoryStateStore;
  client: ParleyClient;
  /** Set while the test closes this client on purpose. */
  closing: { now: boolean };
  userId: string;
  errors: unknown[];
}

const texts = (conversation: Conversation) => conversation.history().map((message) => message.text);

function codeOf(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error) return String(error.code);
  return error instanceof Error ? error.name : String(error);
}

describeE2E('churn: a removal right followed by a leave, again and again, 7 devices', () => {
  let app: TestApp;
  const all: Device[] = [];
  let counter = 0;

  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await Promise.all(all.map((device) => device.client.close()));
    await app.close();
  });

  /** A client of the device's state; what it reports in the background lands in `errors`. */
  function open(member: Pick<Device, 'engine' | 'store' | 'errors'>, closing: { now: boolean }) {
    return ParleyClient.open({
      url: app.url,
      engine: member.engine,
      store: member.store,
      webSocketImpl: WebSocket,
      keyPackageTarget: 3,
      onError: (error: unknown) => {
        // Background work that a deliberate close cut short ends with CLOSED (or, once the
        // restarted client took over the OpenMLS store, ENGINE_CLOSED): the old client's state is
        // not used any more, and what close() leaves behind is the SDK suites' subject.
        if (closing.now) return;
        member.errors.push(error);
      },
    });
  }

  /** A new user with one device; every background error it reports is kept. */
  async function device(engine: MlsEngineFactory): Promise<Device> {
    counter += 1;
    const name = `churn${counter}_${Math.random().toString(36).slice(2, 8)}`;
    const base = { name, engine, store: new MemoryStateStore(), errors: [] as unknown[] };
    const closing = { now: false };
    const client = await open(base, closing);
    await client.signUp(name, 'correct horse battery');
    await client.registerDevice('laptop');
    await client.connect();
    const made: Device = { ...base, client, closing, userId: client.userId ?? '' };
    all.push(made);
    return made;
  }

  /** Closes the device's client and starts it again from its saved state. */
  async function restart(member: Device): Promise<void> {
    member.closing.now = true;
    await member.client.close();
    member.closing = { now: false };
    member.client = await open(member, member.closing);
    await member.client.connect();
  }

  /** Alternates engines with OpenMLS twice as often: 7 devices → 5 OpenMLS, 2 ts-mls at the start. */
  const engineFor = (n: number) => (n % 3 === 2 ? tsMlsEngineFactory : openMls);

  it(`converges after ${ROUNDS} rounds of churn`, async () => {
    const members: Device[] = [];
    for (let n = 0; n < DEVICES; n++) members.push(await device(engineFor(n)));
    const [creator] = members as [Device];
    const group = await creator.client.createConversation(
      members.slice(1).map((member) => member.userId),
    );
    const viewOf = async (member: Device) => {
      await eventually(() => member.client.conversations().some((c) => c.id === group.id), 60_000);
      return member.client.conversation(group.id);
    };
    for (const member of members) await viewOf(member);
    // Everyone removes and adds in turn, and only admins may: the creator makes all admins.
    for (const member of members.slice(1)) await group.setRole(member.userId, 'ADMIN');

    let added = DEVICES;
    for (let round = 1; round <= ROUNDS; round++) {
      // Rotating roles, so that both engines remove, get removed, leave and stay.
      const remover = members[round % members.length] as Device;
      const others = members.filter((member) => member !== remover);
      const removed = others[(2 * round) % others.length] as Device;
      const leaver = others.filter((member) => member !== removed)[
        round % (others.length - 1)
      ] as Device;
      const stay = members.filter((member) => member !== removed && member !== leaver);
      // An OpenMLS device that does not talk this round restarts in the middle of it.
      const restarting = stay.find((member) => member !== remover && member.engine === openMls);
      const sent: string[] = [];

      // The stayers keep talking while the membership changes under them.
      const talk = Promise.all(
        stay
          .filter((member) => member !== remover && member !== restarting)
          .map(async (member) => {
            for (let i = 0; i < 3; i++) {
              const text = `r${round} ${member.name} ${i}`;
              await (await viewOf(member)).send(text);
              sent.push(text);
            }
          }),
      );
      await (await viewOf(remover)).removeUsers([removed.userId]);
      // An OpenMLS device restarts from the state it saved while the others were busy. (Before
      // the leave: a client closed in the middle of its own commit may leave the OpenMLS engine
      // with a commit the server took and the engine discarded — COMMIT_LOST, a known limit.)
      if (restarting !== undefined) await restart(restarting);
      // Right after: a leave, while the others are still processing the removal.
      await (await viewOf(leaver)).leave();
      await talk;
      const last = `r${round} done`;
      await (await viewOf(remover)).send(last);
      sent.push(last);

      // Everyone who stays converges: both gone, every message of the round read.
      for (const member of stay) {
        const view = await viewOf(member);
        const converged = async () => {
          const ids = new Set((await view.members()).map((m) => m.userId));
          return !ids.has(removed.userId) && !ids.has(leaver.userId) && texts(view).includes(last);
        };
        await eventually(converged, 60_000).catch(async (error: unknown) => {
          const names = new Map(all.map((device) => [device.userId, device.name]));
          const seen = (await view.members()).map((m) => names.get(m.userId) ?? m.userId);
          throw new Error(
            `${member.name} (${member.engine === openMls ? 'OpenMLS' : 'ts-mls'}) did not ` +
              `converge in round ${round}: members ${seen.join(', ')}; removed ${removed.name}, ` +
              `left ${leaver.name}; status ${view.status}; last texts ` +
              `${JSON.stringify(texts(view).slice(-4))}; errors ` +
              JSON.stringify(all.flatMap((d) => d.errors.map((e) => `${d.name}: ${codeOf(e)}`))),
            { cause: error },
          );
        });
        for (const text of sent)
          expect(texts(view), `${member.name} in round ${round}`).toContain(text);
      }
      const secrets = await Promise.all(
        stay.map(async (member) =>
          Buffer.from(
            await (await viewOf(member)).exportSecret('exporter', new Uint8Array(), 32),
          ).toString('hex'),
        ),
      );
      expect(new Set(secrets).size, `epoch secrets after round ${round}`).toBe(1);
      expect(
        all.flatMap((member) => member.errors.map((error) => `${member.name}: ${codeOf(error)}`)),
      ).toEqual([]);

      // Back to seven: two new users of either engine join.
      const fresh = [await device(engineFor(added)), await device(engineFor(added + 1))];
      added += 2;
      const adder = await viewOf(stay[round % stay.length] as Device);
      await adder.addUsers(fresh.map((member) => member.userId));
      for (const member of fresh) await adder.setRole(member.userId, 'ADMIN');
      for (const member of fresh) await viewOf(member);
      members.splice(0, members.length, ...stay, ...fresh);
    }
  });
  it('resends a commit whose answer was lost on the way, so an OpenMLS device keeps it', async () => {
    // The server stores the commit, then the connection drops before the answer arrives. The
    // OpenMLS engine cannot keep a commit aside the way ts-mls does: if `send` gives up, it
    // discards the commit, and once the log shows it the device can only rejoin (COMMIT_LOST).
    // The same bytes sent again get the server's original answer (a replay of the bundle that
    // won its epoch), so the outcome is known and nothing is lost.
    const [ana, ben, cy] = [
      await device(openMls),
      await device(openMls),
      await device(tsMlsEngineFactory),
    ];
    const group = await ana.client.createConversation([ben.userId, cy.userId]);
    const joined = async (member: Device) => {
      await eventually(() => member.client.conversations().some((c) => c.id === group.id));
      return member.client.conversation(group.id);
    };
    const benView = await joined(ben);
    await joined(cy);
    const realFetch = globalThis.fetch;
    let cut = 0;
    globalThis.fetch = async (input, init) => {
      const response = await realFetch(input, init);
      if (cut === 0 && typeof init?.body === 'string' && init.body.includes('submitCommitBundle')) {
        cut += 1;
        await response.text();
        throw new TypeError('fetch failed', { cause: new Error('socket hang up') });
      }
      return response;
    };
    try {
      await group.removeUsers([cy.userId]);
    } finally {
      globalThis.fetch = realFetch;
    }
    expect(cut).toBe(1);
    await group.send('after the lost answer');
    await eventually(() => texts(benView).includes('after the lost answer'));
    const secrets = await Promise.all(
      [group, benView].map(async (view) =>
        Buffer.from(await view.exportSecret('exporter', new Uint8Array(), 32)).toString('hex'),
      ),
    );
    expect(new Set(secrets).size).toBe(1);
    expect((await group.members()).map((member) => member.userId)).not.toContain(cy.userId);
    expect([...ana.errors, ...ben.errors].map(codeOf)).toEqual([]);
  });
});
