import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ConversationStatus } from '../client/client-state.js';
import { NotAMemberError } from '../errors.js';
import type { CallFieldsFragment } from '../graphql/generated.js';
import type { GraphqlTransport } from '../transport/graphql-transport.js';
import {
  CALL_HEARTBEAT_INTERVAL_MS,
  type CallEventInfo,
  Calls,
  type CallsContext,
} from './calls.js';

const ME = 'device-me';
const OTHER = 'device-other';
const CONVERSATION = 'conversation-1';

function callFields(participants: string[]): CallFieldsFragment {
  return {
    id: 'call-1',
    conversationId: CONVERSATION,
    media: 'VIDEO',
    startedByDeviceId: OTHER,
    startedAt: '2026-01-01T00:00:00.000Z',
    endedAt: null,
    participants: participants.map((deviceId) => ({
      deviceId,
      userId: `user-of-${deviceId}`,
      joinedAt: '2026-01-01T00:00:00.000Z',
    })),
  };
}

/** A conversation as Calls sees it: its status, and its epoch listeners (markRemoved calls them). */
class FakeConversation {
  status: ConversationStatus = 'active';
  private readonly listeners = new Set<() => void>();

  epochSecrets(): Promise<null> {
    return Promise.resolve(null);
  }

  onEpochChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  sendEphemeralEnvelope(): Promise<void> {
    return Promise.resolve();
  }

  /** What Conversation.markRemoved (or leave) does: a new status, then the epoch listeners. */
  end(status: ConversationStatus): void {
    this.status = status;
    for (const listener of this.listeners) listener();
  }

  get listening(): number {
    return this.listeners.size;
  }
}

describe('Calls: this device out of the conversation', () => {
  let conversation: FakeConversation;
  let requests: string[];
  let joinedBy: string[];
  let heartbeatAnswer: () => Promise<unknown>;
  let reported: unknown[];
  let events: CallEventInfo[];
  let calls: Calls;

  beforeEach(() => {
    vi.useFakeTimers();
    conversation = new FakeConversation();
    requests = [];
    reported = [];
    events = [];
    joinedBy = [OTHER, ME];
    heartbeatAnswer = () => Promise.resolve({ callHeartbeat: callFields([OTHER, ME]) });
    const transport = {
      request: (document: { definitions: { name?: { value: string } }[] }) => {
        const name = document.definitions[0]?.name?.value ?? '';
        requests.push(name);
        if (name === 'JoinCall') return Promise.resolve({ joinCall: callFields(joinedBy) });
        if (name === 'CallHeartbeat') return heartbeatAnswer();
        return Promise.reject(new Error(`unexpected request ${name}`));
      },
    } as unknown as GraphqlTransport;
    const context: CallsContext = {
      transport,
      deviceId: () => ME,
      identity: () => 'identity-of-me',
      conversation: () => conversation,
      report: (error) => reported.push(error),
    };
    calls = new Calls(context);
    calls.onCall((event) => events.push(event));
  });

  afterEach(() => {
    calls.close();
    vi.useRealTimers();
  });

  it('tells its listeners it left the call when a commit removed it, and stops the heartbeats', async () => {
    await calls.join('call-1');
    expect(calls.activeCalls()).toEqual(['call-1']);
    // The server drops a removed device from its calls, but that device's live stream of the
    // conversation ends with the commit that removed it: the LEFT never reaches it.
    conversation.end('removed');
    expect(events).toHaveLength(1);
    expect(events[0]?.change).toBe('LEFT');
    expect(events[0]?.deviceId).toBe(ME);
    expect(events[0]?.call.participants.map((p) => p.deviceId)).toEqual([OTHER]);
    expect(events[0]?.call.endedAt).toBeNull();
    expect(calls.activeCalls()).toEqual([]);
    expect(conversation.listening).toBe(0);
    await vi.advanceTimersByTimeAsync(3 * CALL_HEARTBEAT_INTERVAL_MS);
    expect(requests.filter((name) => name === 'CallHeartbeat')).toEqual([]);
    expect(reported).toEqual([]);
  });

  it('says the call ended too when this device was its last participant', async () => {
    joinedBy = [ME];
    await calls.join('call-1');
    conversation.end('left');
    expect(events.map((event) => event.change)).toEqual(['LEFT', 'ENDED']);
    expect(events[1]?.call.endedAt).toBeInstanceOf(Date);
  });

  it('goes on through epoch changes while the conversation is active', async () => {
    await calls.join('call-1');
    conversation.end('active');
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(CALL_HEARTBEAT_INTERVAL_MS);
    expect(requests.filter((name) => name === 'CallHeartbeat')).toHaveLength(1);
    expect(calls.activeCalls()).toEqual(['call-1']);
  });

  it('takes a heartbeat answered NOT_A_MEMBER as being out of the call, without an error', async () => {
    heartbeatAnswer = () =>
      Promise.reject(new NotAMemberError('NOT_A_MEMBER', 'This device is not a member'));
    await calls.join('call-1');
    await vi.advanceTimersByTimeAsync(CALL_HEARTBEAT_INTERVAL_MS);
    expect(events.map((event) => [event.change, event.deviceId])).toEqual([['LEFT', ME]]);
    expect(calls.activeCalls()).toEqual([]);
    expect(reported).toEqual([]);
    // The live stream's own LEFT, if it comes after all, is passed on as it is.
    calls.receive({ callChange: 'LEFT', callDeviceId: ME, call: callFields([OTHER]) });
    expect(events).toHaveLength(2);
  });
});
