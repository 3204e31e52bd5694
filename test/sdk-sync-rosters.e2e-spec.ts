import {
  type ConnectionChange,
  type Conversation,
  MemoryStateStore,
  ParleyClient,
} from '@parley/client';
import { createOpenMlsEngineFactory } from '@parley/engine-openmls';
import WebSocket from 'ws';
import { expect, it } from 'vitest';
import { eventually, joined, sdkClient, sdkSuite } from './support/sdk-clients.js';
import { describeE2E } from './support/test-app.js';

/**
 * sync() reads each conversation's roster only where it may have changed (issue 14: the list
 * with every member of every conversation cost 763 ms and 10 MB for 50 × 1,000 per sync). A
 * roster changes by commits (the epoch moves) and by leaves and device deletions (it does not):
 * those arrive live, so within one live session a conversation whose epoch stayed is not read
 * again; the first sync of a session reads them all, so what happened offline is still seen.
 */
const openMls = createOpenMlsEngineFactory();

/** What one device's conversation reads asked for and got. */
interface Reads {
  requests: number;
  bytes: number;
  /** The conversations whose members an answer held. */
  withMembers: string[];
}

describeE2E('sync() and conversation rosters', () => {
  const { app, user, clients } = sdkSuite(openMls);
  const realFetch = globalThis.fetch;

  /** The conversation reads (`conversation`, `conversations`) of `deviceId` while `run` runs. */
  async function readsOf(deviceId: string, run: () => Promise<unknown>): Promise<Reads> {
    const reads: Reads = { requests: 0, bytes: 0, withMembers: [] };
    globalThis.fetch = async (input, init) => {
      const response = await realFetch(input, init);
      const body = typeof init?.body === 'string' ? init.body : '';
      const read = /\bconversations?\(/.test(body) && !body.includes('mutation');
      if (!read || !body.includes(deviceId)) return response;
      const text = await response.clone().text();
      reads.requests += 1;
      reads.bytes += Buffer.byteLength(text);
      const { data } = JSON.parse(text) as {
        data?: {
          conversations?: { id: string; members?: unknown }[];
          conversation?: { id: string; members?: unknown };
        };
      };
      const listed = data?.conversations ?? (data?.conversation ? [data.conversation] : []);
      for (const conversation of listed) {
        if (Array.isArray(conversation.members)) reads.withMembers.push(conversation.id);
      }
      return response;
    };
    try {
      await run();
    } finally {
      globalThis.fetch = realFetch;
    }
    return reads;
  }

  const deviceIds = async (conversation: Conversation) =>
    (await conversation.members()).map((member) => member.deviceId).sort();

  it('reads again only the rosters of conversations whose epoch moved', async () => {
    const ana = await user();
    const ben = await user();
    const count = 12;
    const groups: Conversation[] = [];
    for (let n = 0; n < count; n += 1) {
      groups.push(await ana.client.createConversation([ben.client.userId ?? '']));
    }
    for (const group of groups) await joined(ben.client, group.id);
    const benId = ben.client.deviceId ?? '';

    const joinedReads = await readsOf(benId, () => ben.client.sync());
    const unchanged = await readsOf(benId, () => ben.client.sync());
    // A commit in one of them moves its epoch: that roster, and only it, is read again.
    const moved = groups[5] as Conversation;
    await moved.updateKeys();
    const afterCommit = await readsOf(benId, () => ben.client.sync());
    const again = await readsOf(benId, () => ben.client.sync());
    const line = (reads: Reads) =>
      `${reads.requests} requests, ${reads.bytes} B, ${reads.withMembers.length} rosters`;
    console.info(
      `sync of ${count} conversations of 2 members — after joining them: ${line(joinedReads)}; ` +
        `nothing changed: ${line(unchanged)}; one epoch moved: ${line(afterCommit)}`,
    );

    expect(unchanged.withMembers).toEqual([]);
    expect(afterCommit.withMembers).toEqual([moved.id]);
    expect(again.withMembers).toEqual([]);
  });

  it('removes a member who left while nobody was online, at the next connect', async () => {
    const store = new MemoryStateStore();
    const ana = await user(store);
    const cy = await user();
    const group = await ana.client.createConversation([cy.client.userId ?? '']);
    const cyView = await joined(cy.client, group.id);
    const cyId = cy.client.deviceId ?? '';
    // A sync in the session: this conversation's roster is now known at its epoch.
    await ana.client.sync();
    await ana.client.close();

    await cyView.leave();
    const restarted = await sdkClient(app(), openMls, store);
    clients.push(restarted);
    await restarted.connect();
    const view = restarted.conversation(group.id);
    await eventually(async () => !(await deviceIds(view)).includes(cyId));
    expect(await deviceIds(view)).toEqual([restarted.deviceId]);
  });

  it('reads every roster again after a reconnect: a leave while the socket was down is seen', async () => {
    // Ana's sockets: cut on demand, and refused (a closed port) while `down` holds.
    const sockets = new Set<WebSocket>();
    const network = { down: false };
    class CuttableWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(network.down ? 'ws://127.0.0.1:9/graphql' : url, protocols);
        sockets.add(this);
      }
    }
    const ana = await ParleyClient.open({
      url: app().url,
      engine: openMls,
      webSocketImpl: CuttableWebSocket,
      keyPackageTarget: 5,
      onError: (error: unknown) => {
        console.error('SDK background error:', error);
      },
    });
    clients.push(ana);
    await ana.signUp(`roster_${Math.random().toString(36).slice(2, 8)}`, 'correct horse battery');
    await ana.registerDevice('laptop');
    await ana.connect();
    const changes: ConnectionChange[] = [];
    ana.onConnection((change) => changes.push(change));
    const cy = await user();
    const group = await ana.createConversation([cy.client.userId ?? '']);
    const cyView = await joined(cy.client, group.id);
    const cyId = cy.client.deviceId ?? '';
    // Read in this session with nothing to do: a later sync of the session skips it.
    await ana.sync();
    expect((await readsOf(ana.deviceId ?? '', () => ana.sync())).withMembers).toEqual([]);

    network.down = true;
    for (const socket of sockets) socket.terminate();
    await eventually(() => changes.some((change) => change.state === 'offline'));
    // Cy leaves while Ana hears nothing, and nobody else is there to commit the removal.
    await cyView.leave();
    network.down = false;
    await eventually(() => changes.some((change) => change.state === 'online'), 30_000);
    await eventually(async () => !(await deviceIds(group)).includes(cyId));
    expect(await deviceIds(group)).toEqual([ana.deviceId]);
  });

  it('removes a member who leaves during the session, and one whose device is deleted', async () => {
    const ana = await user();
    const cy = await user();
    const dan = await user();
    const group = await ana.client.createConversation([
      cy.client.userId ?? '',
      dan.client.userId ?? '',
    ]);
    const cyView = await joined(cy.client, group.id);
    await joined(dan.client, group.id);
    await ana.client.sync();
    await dan.client.sync();
    const cyId = cy.client.deviceId ?? '';
    const danId = dan.client.deviceId ?? '';

    await cyView.leave();
    await eventually(async () => !(await deviceIds(group)).includes(cyId));
    await dan.client.deleteDevice(danId);
    await eventually(async () => !(await deviceIds(group)).includes(danId));
    // A sync afterwards finds nothing more to do.
    await ana.client.sync();
    expect(await deviceIds(group)).toEqual([ana.client.deviceId]);
  });
});
