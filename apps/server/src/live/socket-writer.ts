import type { Socket } from 'node:net';

/** The part of a `ws` WebSocket that frames are written through. */
export interface FrameSocket {
  readonly readyState: number;
  readonly OPEN: number;
  /** Bytes accepted but not yet handed to the kernel (ws: the TCP socket's queue). */
  readonly bufferedAmount: number;
  send(data: string): void;
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

/**
 * Writes one text frame without waiting for it to be flushed, corking the socket until the end
 * of the tick (process.nextTick runs once the current chain of microtasks is done). False when
 * the socket is no longer open (the frame is dropped: its subscription ends with the socket).
 */
export function writeFrame(socket: FrameSocket, frame: string): boolean {
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
  socket.send(frame);
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
