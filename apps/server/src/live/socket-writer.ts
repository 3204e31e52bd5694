import type { Socket } from 'node:net';

/** The part of a `ws` WebSocket that frames are written through. */
export interface FrameSocket {
  readonly readyState: number;
  readonly OPEN: number;
  /** Bytes accepted but not yet handed to the kernel (ws: the TCP socket's queue). */
  readonly bufferedAmount: number;
  /** The extensions the handshake agreed on; '' when none (no permessage-deflate). */
  readonly extensions?: string;
  /** ws's send: `fin: false` sends a fragment, continued by the next send of the same message. */
  send(data: Buffer, options: { binary: boolean; fin: boolean }): void;
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

/**
 * Sockets corked during this tick. One fan-out writes a frame to many sockets from one chain of
 * microtasks: corked until the chain is done, each socket then goes out in one `writev` with all
 * its frames of the tick instead of one syscall per frame.
 */
const corked = new Set<Socket>();
let uncorkScheduled = false;

function uncorkAll(): void {
  uncorkScheduled = false;
  for (const socket of corked) socket.uncork();
  corked.clear();
}

/** ws keeps its TCP socket private; it is the one that can be corked and says when it drained. */
function tcpOf(socket: FrameSocket): Socket | undefined {
  const raw = (socket as unknown as { _socket?: unknown })._socket;
  return typeof raw === 'object' && raw !== null && 'cork' in raw ? (raw as Socket) : undefined;
}

/** A socket's TCP socket, and whether frames may be written to it as they are (no extension). */
interface Framing {
  raw: Socket | undefined;
  plain: boolean;
}

// Per socket, as the handshake left it: ws works `extensions` out afresh on every read.
const framings = new WeakMap<FrameSocket, Framing>();

function framingOf(socket: FrameSocket): Framing {
  let framing = framings.get(socket);
  if (framing === undefined) {
    framing = { raw: tcpOf(socket), plain: socket.extensions === '' };
    framings.set(socket, framing);
  }
  return framing;
}

const FIRST_FRAGMENT = { binary: false, fin: false };
const LAST_FRAGMENT = { binary: false, fin: true };
// RFC 6455 §5.2: FIN set, opcode 1 (text). A server's frames are not masked.
const FIN_TEXT = 0x81;

/**
 * One unmasked text frame's header, followed by `head` in the same buffer: the frame's length
 * in 7, 7+16 or 7+64 bits (RFC 6455 §5.2), for a message of `length` bytes that starts with
 * `head`.
 */
function frameStart(length: number, head: Buffer): Buffer {
  const headerBytes = length < 126 ? 2 : length < 0x10000 ? 4 : 10;
  const start = Buffer.allocUnsafe(headerBytes + head.length);
  start[0] = FIN_TEXT;
  if (headerBytes === 2) {
    start[1] = length;
  } else if (headerBytes === 4) {
    start[1] = 126;
    start.writeUInt16BE(length, 2);
  } else {
    start[1] = 127;
    start.writeBigUInt64BE(BigInt(length), 2);
  }
  head.copy(start, headerBytes);
  return start;
}

/**
 * Writes one text message, `head` then `body`, without waiting for it to be flushed, corking the
 * socket until the end of the tick (process.nextTick runs once the current chain of microtasks
 * is done). The body, shared by many sockets (an event's serialised payload), is handed to each
 * as the same bytes, never copied or re-encoded per socket. False when the socket is no longer
 * open (the message is dropped: its subscription ends with the socket).
 *
 * Where ws's TCP socket is at hand and no extension was agreed (ws then writes every message as
 * it is sent, queueing none), the frame is written to it directly: its header and `head` in one
 * small buffer, then the body. ws's `send()` costs about a microsecond and a few allocations
 * per call, once per part per subscriber, which was a fifth of the thread in the fan-out.
 * Otherwise `head` and the body go out as two fragments of the one message through ws
 * (RFC 6455 §5.4, which every client reassembles).
 */
export function writeMessage(socket: FrameSocket, head: Buffer, body: Buffer): boolean {
  if (socket.readyState !== socket.OPEN) return false;
  const { raw, plain } = framingOf(socket);
  if (raw !== undefined && !corked.has(raw)) {
    raw.cork();
    corked.add(raw);
    if (!uncorkScheduled) {
      uncorkScheduled = true;
      process.nextTick(uncorkAll);
    }
  }
  // Synchronous and back to back: nothing else of this socket can come between the two.
  if (raw !== undefined && plain) {
    raw.write(frameStart(head.length + body.length, head));
    raw.write(body);
  } else {
    socket.send(head, FIRST_FRAGMENT);
    socket.send(body, LAST_FRAGMENT);
  }
  return true;
}

/**
 * Resolves once the socket holds at most `highWaterBytes` unsent, or is closed: what a writer
 * awaits before taking more events for a client that reads slower than they come.
 */
export function drained(
  socket: FrameSocket,
  highWaterBytes: number,
  /** Stops waiting early when this settles. */
  until?: Promise<void>,
): Promise<void> {
  if (socket.bufferedAmount <= highWaterBytes || socket.readyState !== socket.OPEN) {
    return Promise.resolve();
  }
  const raw = tcpOf(socket);
  return new Promise((resolve) => {
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      raw?.off('drain', onDrain);
      socket.off('close', done);
      resolve();
    };
    const onDrain = (): void => {
      if (socket.bufferedAmount <= highWaterBytes) done();
    };
    raw?.on('drain', onDrain);
    socket.once('close', done);
    void until?.then(done);
    // No TCP socket to watch (not ws): nothing to wait for.
    if (raw === undefined) done();
  });
}
