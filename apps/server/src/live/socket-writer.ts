import type { Socket } from 'node:net';

/** The part of a `ws` WebSocket that frames are written through. */
export interface FrameSocket {
  readonly readyState: number;
  readonly OPEN: number;
  /** Bytes accepted but not yet handed to the kernel (ws: the TCP socket's queue). */
  readonly bufferedAmount: number;
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

const TEXT_FRAGMENT = { binary: false, fin: false };
const LAST_FRAGMENT = { binary: false, fin: true };

/**
 * Writes one text message made of `parts` (at least one) without waiting for it to be flushed, corking the
 * socket until the end of the tick (process.nextTick runs once the current chain of microtasks
 * is done). Each part goes out as a WebSocket fragment of the one message (RFC 6455 §5.4, which
 * every client reassembles), so a part shared by many sockets — an event's serialised payload —
 * is handed to each as the same bytes, never copied or re-encoded per socket. False when the
 * socket is no longer open (the message is dropped: its subscription ends with the socket).
 */
export function writeMessage(socket: FrameSocket, parts: readonly Buffer[]): boolean {
  if (socket.readyState !== socket.OPEN) return false;
  const raw = tcpOf(socket);
  if (raw !== undefined && !corked.has(raw)) {
    raw.cork();
    corked.add(raw);
    if (!uncorkScheduled) {
      uncorkScheduled = true;
      process.nextTick(uncorkAll);
    }
  }
  const last = parts.length - 1;
  // Synchronous and back to back: nothing else of this socket can come between the fragments.
  for (const [index, part] of parts.entries()) {
    socket.send(part, index === last ? LAST_FRAGMENT : TEXT_FRAGMENT);
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
