import { describe, expect, it } from 'vitest';
import {
  type ClientState,
  defaultInfo,
  deserializeClientState,
  emptyClientState,
  serializeClientState,
} from './client-state.js';

describe('the client state format', () => {
  it('keeps conversation statuses, info (kind, role, metadata, unread) and the outbox, ciphertext included', () => {
    const state: ClientState = {
      ...emptyClientState(),
      token: 't',
      userId: 'u',
      deviceId: 'd',
      identity: 'i',
      engine: 'ts-mls',
      engineState: Uint8Array.of(1, 2, 3),
      conversations: new Map([
        [
          'c1',
          {
            groupId: Uint8Array.of(9),
            status: 'removed',
            cursor: 4,
            history: [
              {
                seq: 3,
                senderUserId: 'u2',
                senderDeviceId: 'd2',
                own: false,
                type: 'timer',
                id: 't',
                text: null,
                sentAt: '2026-01-01T00:00:00.000Z',
                timerSeconds: 30,
              },
              {
                seq: 4,
                senderUserId: 'u2',
                senderDeviceId: 'd2',
                own: false,
                type: 'text',
                id: 'x',
                text: 'hi',
                sentAt: '2026-01-01T00:00:00.000Z',
                expiresAt: '2026-01-01T00:00:30.000Z',
              },
            ],
            info: {
              kind: 'DIRECT',
              peerUserId: 'u2',
              role: 'ADMIN',
              metadata: { name: 'Ben', description: null, avatar: Uint8Array.of(1, 2) },
              metadataSeq: 3,
              readSeq: 2,
              unreadCount: 1,
              lastMessage: {
                seq: 4,
                senderUserId: 'u2',
                senderDeviceId: 'd2',
                own: false,
                type: 'text',
                id: 'x',
                text: 'hi',
                sentAt: '2026-01-01T00:00:00.000Z',
                expiresAt: '2026-01-01T00:00:30.000Z',
              },
              timerSeconds: 30,
              timerSeq: 3,
              serverTimerSeconds: 30,
            },
          },
        ],
      ]),
      outbox: [
        {
          conversationId: 'c1',
          id: 'm1',
          text: 'hello',
          createdAt: '2026-01-01T00:00:00.000Z',
          state: 'pending',
          ciphertext: Uint8Array.of(7, 7),
          error: null,
        },
        {
          conversationId: 'c1',
          id: 'm3',
          text: '',
          type: 'metadata',
          metadata: { name: 'Trip', description: null, avatar: null, basedOn: 3 },
          createdAt: '2026-01-01T00:00:00.500Z',
          state: 'pending',
          ciphertext: null,
          error: null,
        },
        {
          conversationId: 'c1',
          id: 'm2',
          text: 'too big',
          createdAt: '2026-01-01T00:00:01.000Z',
          state: 'failed',
          ciphertext: null,
          error: { code: 'LIMIT_EXCEEDED', message: 'too large', details: { limit: 1 } },
        },
      ],
    };
    expect(deserializeClientState(serializeClientState(state))).toEqual(state);
  });

  it('loads a state saved before the outbox (version 1): every conversation active, no outbox', () => {
    const version1 = {
      version: 1,
      token: 't',
      userId: 'u',
      deviceId: 'd',
      identity: 'i',
      engine: 'ts-mls',
      engineState: 'AQID',
      conversations: { c1: { groupId: 'CQ==', cursor: 4, history: [] } },
    };
    const loaded = deserializeClientState(new TextEncoder().encode(JSON.stringify(version1)));
    expect(loaded.conversations.get('c1')).toEqual({
      groupId: Uint8Array.of(9),
      status: 'active',
      cursor: 4,
      history: [],
      info: defaultInfo(),
    });
    expect(loaded.outbox).toEqual([]);
    expect(loaded.engineState).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('loads a version 2 state: conversations get the default info (GROUP, metadata all null)', () => {
    const version2 = {
      version: 2,
      token: 't',
      userId: 'u',
      deviceId: 'd',
      identity: 'i',
      engine: 'ts-mls',
      engineState: null,
      conversations: { c1: { groupId: 'CQ==', status: 'left', cursor: 4, history: [] } },
      outbox: [],
    };
    const loaded = deserializeClientState(new TextEncoder().encode(JSON.stringify(version2)));
    expect(loaded.conversations.get('c1')?.info).toEqual(defaultInfo());
    expect(loaded.conversations.get('c1')?.info.metadata).toEqual({
      name: null,
      description: null,
      avatar: null,
    });
  });

  it('loads a version 3 state (before message timers): no timer known, messages never expire', () => {
    const version3 = {
      version: 3,
      token: 't',
      userId: 'u',
      deviceId: 'd',
      identity: 'i',
      engine: 'ts-mls',
      engineState: null,
      conversations: {
        c1: {
          groupId: 'CQ==',
          status: 'active',
          cursor: 4,
          history: [
            {
              seq: 4,
              senderUserId: 'u2',
              senderDeviceId: 'd2',
              own: false,
              type: 'text',
              id: 'x',
              text: 'hi',
              sentAt: '2026-01-01T00:00:00.000Z',
            },
          ],
          info: {
            kind: 'GROUP',
            peerUserId: null,
            role: 'MEMBER',
            metadata: { name: null, description: null, avatar: null },
            metadataSeq: 0,
            readSeq: 0,
            unreadCount: 1,
            lastMessage: null,
          },
        },
      },
      outbox: [],
    };
    const loaded = deserializeClientState(new TextEncoder().encode(JSON.stringify(version3)));
    const record = loaded.conversations.get('c1');
    expect(record?.info).toMatchObject({ timerSeconds: null, timerSeq: 0, serverTimerSeconds: 0 });
    expect(record?.history[0]?.expiresAt).toBeUndefined();
  });

  it('refuses a version it does not know', () => {
    const future = new TextEncoder().encode(JSON.stringify({ version: 99 }));
    expect(() => deserializeClientState(future)).toThrow('Unknown client state version 99');
  });
});
