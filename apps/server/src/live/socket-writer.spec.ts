import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { writeMessage } from './socket-writer.js';

/** A real ws server and client; `serverSide` is the server's end of the one connection. */
async function connectedPair(
  options: { perMessageDeflate: boolean } = { perMessageDeflate: false },
): Promise<{ serverSide: WebSocket; received: string[]; close: () => Promise<void> }> {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options });
  await new Promise((resolve) => server.once('listening', resolve));
  const serverSide = new Promise<WebSocket>((resolve) => server.once('connection', resolve));
  const { port } = server.address() as AddressInfo;
  const client = new WebSocket(`ws://127.0.0.1:${port}`, options);
  const received: string[] = [];
  client.on('message', (data, isBinary) => {
    expect(isBinary).toBe(false);
    received.push(Buffer.from(data as Buffer).toString('utf8'));
  });
  await new Promise((resolve) => client.once('open', resolve));
  return {
    serverSide: await serverSide,
    received,
    close: async () => {
      client.terminate();
      await new Promise((resolve) => {
        server.close(resolve);
      });
    },
  };
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const message = (size: number): { head: Buffer; body: Buffer; text: string } => {
  const head = Buffer.from('{"id":"é-1","payload":');
  const body = Buffer.from(`${'x'.repeat(Math.max(0, size - head.length - 1))}}`);
  return { head, body, text: Buffer.concat([head, body]).toString('utf8') };
};

describe('writeMessage', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  // Each length field of RFC 6455 §5.2 at its edges: 7 bits, 16 bits, 64 bits.
  const sizes = [24, 125, 126, 127, 65_535, 65_536, 200_000];

  it('writes frames a ws client reads as the whole message, at every length encoding', async () => {
    const pair = await connectedPair();
    close = pair.close;
    expect(pair.serverSide.extensions).toBe('');
    // Written to the TCP socket directly, not through ws's send().
    const send = vi.spyOn(pair.serverSide, 'send');
    const sent = sizes.map(message);
    for (const { head, body } of sent) {
      expect(writeMessage(pair.serverSide, head, body)).toBe(true);
    }
    await until(() => pair.received.length === sent.length);
    expect(pair.received).toEqual(sent.map(({ text }) => text));
    expect(send).not.toHaveBeenCalled();
  });

  it('queues two writes per message: the frame header with the head, then the shared body', async () => {
    const pair = await connectedPair();
    close = pair.close;
    const tcp = (pair.serverSide as unknown as { _socket: Socket })._socket;
    const write = vi.spyOn(tcp, 'write');
    const { head, body, text } = message(300);
    writeMessage(pair.serverSide, head, body);
    // Each write is an entry in the corked socket's queue, once per subscriber per event.
    expect(write).toHaveBeenCalledTimes(2);
    // The body is handed over as it is, never copied per socket.
    expect(write.mock.calls[1]?.[0]).toBe(body);
    await until(() => pair.received.length === 1);
    expect(pair.received).toEqual([text]);
  });

  it('keeps order with what ws itself sends on the same socket (graphql-ws’s own messages)', async () => {
    const pair = await connectedPair();
    close = pair.close;
    const socket = pair.serverSide;
    writeMessage(socket, message(40).head, message(40).body);
    pair.serverSide.send('{"type":"ping"}');
    writeMessage(socket, message(300).head, message(300).body);
    await until(() => pair.received.length === 3);
    expect(pair.received).toEqual([message(40).text, '{"type":"ping"}', message(300).text]);
  });

  it('sends fragments through ws where an extension was agreed (permessage-deflate)', async () => {
    const pair = await connectedPair({ perMessageDeflate: true });
    close = pair.close;
    expect(pair.serverSide.extensions).toContain('permessage-deflate');
    const send = vi.spyOn(pair.serverSide, 'send');
    const sent = [126, 70_000].map(message);
    for (const { head, body } of sent) writeMessage(pair.serverSide, head, body);
    await until(() => pair.received.length === sent.length);
    expect(pair.received).toEqual(sent.map(({ text }) => text));
    expect(send).toHaveBeenCalledTimes(4);
  });

  it('drops the message once the socket is closed', async () => {
    const pair = await connectedPair();
    close = pair.close;
    pair.serverSide.terminate();
    expect(writeMessage(pair.serverSide, message(40).head, message(40).body)).toBe(false);
  });
});
