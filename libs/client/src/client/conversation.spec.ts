import { describe, expect, it } from 'vitest';
import { callSignalEnvelope } from '../content/envelope.js';
import { NetworkError } from '../errors.js';
import { Conversation, type ConversationContext } from './conversation.js';

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/**
 * A conversation whose engine "encrypts" a signal to its number (the order of encryption) and
 * whose sendEphemeral takes `delay(n)` ms for signal n before the server has it, or fails for
 * the numbers in `failing`. Records the order the server got them and the most posts at once.
 */
function conversationWithServer(delay: (n: number) => number, failing = new Set<number>()) {
  let encrypted = 0;
  let inFlight = 0;
  const server = { arrived: [] as number[], mostInFlight: 0 };
  const context = {
    deviceId: 'device-a',
    engine: {
      encrypt: () => Promise.resolve(new Uint8Array([encrypted++])),
    },
    sendEphemeral: async (_conversationId: string, ciphertext: Uint8Array) => {
      const n = ciphertext[0] ?? -1;
      inFlight += 1;
      server.mostInFlight = Math.max(server.mostInFlight, inFlight);
      try {
        await sleep(delay(n));
        if (failing.has(n)) throw new NetworkError('NETWORK', `post ${n} cut`);
        server.arrived.push(n);
      } finally {
        inFlight -= 1;
      }
    },
  } as unknown as ConversationContext;
  const conversation = new Conversation(context, 'conversation-1', new Uint8Array([1]), 0);
  const signal = (n: number) =>
    conversation.sendEphemeralEnvelope(
      callSignalEnvelope({ callId: 'call-1', to: 'device-b', kind: 'candidate', payload: `${n}` }),
    );
  return { server, signal };
}

describe('Conversation signals', () => {
  it('posts a burst one after the other, in the order encrypted, however long each post takes', async () => {
    // Each later post would reach the server sooner: posted at once, they arrive reversed.
    const burst = 12;
    const { server, signal } = conversationWithServer((n) => (burst - n) * 3);
    await Promise.all(Array.from({ length: burst }, (_, n) => signal(n)));
    expect(server.arrived).toEqual(Array.from({ length: burst }, (_, n) => n));
    expect(server.mostInFlight).toBe(1);
  });

  it('gives each caller its own failure, and a failed post holds back none after it', async () => {
    const { server, signal } = conversationWithServer((n) => (n === 1 ? 20 : 1), new Set([1]));
    const results = await Promise.allSettled([signal(0), signal(1), signal(2), signal(3)]);
    expect(results.map((result) => result.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
    ]);
    expect(results[1]).toMatchObject({ reason: { code: 'NETWORK', message: 'post 1 cut' } });
    expect(server.arrived).toEqual([0, 2, 3]);
    expect(server.mostInFlight).toBe(1);
  });
});
