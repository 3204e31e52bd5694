import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import {
  closedError,
  errorFromGraphql,
  NetworkError,
  ParleyError,
  RateLimitedError,
  UnauthenticatedError,
} from '../errors.js';

// The server closes a live socket with 4401 ("Unauthorized") when it brought no token or its token
// was revoked (signOut, signOutEverywhere) or expired, and with 4403 ("Forbidden") when the token
// does not verify.
const UNAUTHORIZED_CLOSE_CODES = new Set([4401, 4403]);
// A connection refused for a rate limit (HTTP 429's number).
const RATE_LIMITED_CLOSE_CODE = 4429;

/** What a live subscription reports. */
export interface SubscriptionHandlers<T> {
  next(data: T): void;
  error(error: ParleyError): void;
  complete(): void;
}

/** How to reach the server: its GraphQL URL, and a WebSocket class where there is no global one. */
export interface TransportOptions {
  url: string;
  token?: string;
  /** Node before 22 has no global WebSocket: pass `ws`'s. */
  webSocketImpl?: unknown;
  /** How long one query or mutation may take before it fails with a NetworkError (30 s). */
  requestTimeoutMs?: number;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
// A server that accepts the socket but never acknowledges it fails the connection after this.
const CONNECTION_ACK_TIMEOUT_MS = 30_000;
// How long close() waits for a socket's closing handshake before it cuts the socket.
const SOCKET_CLOSE_GRACE_MS = 1_000;

/** The parts of a WebSocket (browser or `ws`) that shutting down needs. */
interface ClosableSocket {
  readonly readyState: number;
  close(code?: number, reason?: string): void;
  terminate?: () => void;
  addEventListener(type: 'close' | 'error', listener: () => void): void;
}

type WebSocketClass = new (url: string, protocols?: string | string[]) => ClosableSocket;

/**
 * Queries and mutations over HTTP, subscriptions over graphql-ws, both with the bearer token;
 * server errors become typed {@link ParleyError}s, transport failures {@link NetworkError}s whose
 * message a person can read.
 */
export class GraphqlTransport {
  private token: string | undefined;
  private ws: Client | undefined;
  private shutDown = false;
  // Aborts every request in flight when the client closes.
  private readonly aborter = new AbortController();
  // Every socket opened, so that shutting down can wait for (or force) their end.
  private readonly sockets = new Set<ClosableSocket>();
  // The last socket error, which explains the 1006 close that follows it.
  private lastSocketError: unknown = undefined;

  constructor(private readonly options: TransportOptions) {
    this.token = options.token;
  }

  /** The GraphQL URL this transport talks to. */
  get url(): string {
    return this.options.url;
  }

  /** Uses this token (none: signed out) from now on; a new socket is opened for later subscriptions. */
  setToken(token: string | undefined): void {
    this.token = token;
    void this.ws?.dispose();
    this.ws = undefined;
  }

  /** One query or mutation; resolves with its data or rejects with a ParleyError. */
  async request<TResult, TVariables>(
    document: TypedDocumentNode<TResult, TVariables>,
    variables: TVariables,
  ): Promise<TResult> {
    if (this.shutDown) throw closedError();
    const timeoutMs = this.options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const signal = AbortSignal.any([this.aborter.signal, AbortSignal.timeout(timeoutMs)]);
    const url = this.options.url;
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.token === undefined ? {} : { authorization: `Bearer ${this.token}` }),
        },
        body: JSON.stringify({ query: print(document), variables }),
        signal,
      });
    } catch (error) {
      throw this.failure(error, timeoutMs);
    }
    let body: {
      data?: TResult | null;
      errors?: { message?: unknown; extensions?: Record<string, unknown> }[];
    } | null;
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw this.failure(error, timeoutMs);
    }
    const notGraphql = () =>
      new NetworkError(
        'NETWORK',
        `The server at ${url} answered HTTP ${response.status}, not GraphQL (is it a Parley server?)`,
        { status: response.status },
      );
    // No GraphQL endpoint answers 404 (a wrong path does, even on a Parley server's own routes).
    if (response.status === 404) throw notGraphql();
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw notGraphql();
    }
    // JSON without `data` or `errors` (a framework's 404 page, say) is no GraphQL answer either.
    if (typeof body !== 'object' || body === null) throw notGraphql();
    const [first] = Array.isArray(body.errors) ? body.errors : [];
    if (first !== undefined) throw errorFromGraphql(first);
    if (body.data == null) throw notGraphql();
    return body.data;
  }

  /** Starts a subscription; returns a function that stops it. */
  subscribe<TResult, TVariables extends Record<string, unknown>>(
    document: TypedDocumentNode<TResult, TVariables>,
    variables: TVariables,
    handlers: SubscriptionHandlers<TResult>,
  ): () => void {
    if (this.shutDown) {
      handlers.error(closedError());
      return () => undefined;
    }
    this.ws ??= this.createSocketClient();
    return this.ws.subscribe<TResult>(
      { query: print(document), variables },
      {
        next: (result) => {
          const [first] = result.errors ?? [];
          if (first !== undefined) handlers.error(errorFromGraphql(first));
          else if (result.data != null) handlers.next(result.data);
        },
        error: (error: unknown) => {
          const [first] = Array.isArray(error)
            ? (error as { message?: unknown; extensions?: Record<string, unknown> }[])
            : [];
          handlers.error(
            first !== undefined
              ? errorFromGraphql(first)
              : this.shutDown
                ? closedError()
                : closeError(error, this.options.url, this.lastSocketError),
          );
        },
        complete: () => {
          handlers.complete();
        },
      },
    );
  }

  /** Closes the socket, if any (a later subscription opens a new one). */
  async close(): Promise<void> {
    const ws = this.ws;
    this.ws = undefined;
    if (ws === undefined) return;
    // graphql-ws's dispose() first waits for a socket still connecting to open — forever, with a
    // server that takes the connection and never answers; terminate() ends that one at once.
    if ([...this.sockets].some((socket) => socket.readyState === 0)) ws.terminate();
    await Promise.resolve(ws.dispose()).catch(() => undefined);
  }

  /**
   * Ends the transport for good: requests in flight are aborted (they reject with CLOSED), later
   * ones are refused, and every socket is closed — cut if its closing handshake takes longer
   * than a second — so that nothing of the transport keeps the process alive.
   */
  async shutdown(): Promise<void> {
    this.shutDown = true;
    this.aborter.abort();
    await this.close();
    // Sockets still connecting (a server that never answers the upgrade) are cut at once.
    for (const socket of this.sockets) if (socket.readyState === 0) socket.terminate?.();
    await Promise.all(
      [...this.sockets].map(
        (socket) =>
          new Promise<void>((resolve) => {
            // WebSocket.CLOSED is 3 in browsers and in `ws`.
            if (socket.readyState === 3) {
              resolve();
              return;
            }
            const timer = setTimeout(() => {
              socket.terminate?.();
              resolve();
            }, SOCKET_CLOSE_GRACE_MS);
            socket.addEventListener('close', () => {
              clearTimeout(timer);
              resolve();
            });
            socket.close(1000, 'Normal Closure');
          }),
      ),
    );
    this.sockets.clear();
  }

  private createSocketClient(): Client {
    const Base = (this.options.webSocketImpl ??
      (globalThis as { WebSocket?: unknown }).WebSocket) as WebSocketClass | undefined;
    if (Base === undefined) {
      throw new ParleyError(
        'NO_WEBSOCKET',
        'There is no WebSocket here: pass webSocketImpl (e.g. the ws package)',
      );
    }
    const sockets = this.sockets;
    // A subclass that remembers its sockets, including one still connecting when close() runs.
    class TrackedWebSocket extends Base {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        sockets.add(this);
        this.addEventListener('close', () => sockets.delete(this));
        // `ws` throws an 'error' nobody listens to (one closed while connecting emits one after
        // graphql-ws dropped its handlers); graphql-ws reports errors through its own handler.
        this.addEventListener('error', () => undefined);
      }
    }
    this.lastSocketError = undefined;
    return createClient({
      url: this.options.url.replace(/^http/, 'ws'),
      connectionParams: () =>
        this.token === undefined ? {} : { authorization: `Bearer ${this.token}` },
      webSocketImpl: TrackedWebSocket,
      // The SDK resumes from its cursors itself; a dead socket is reported, not silently retried.
      retryAttempts: 0,
      lazy: true,
      connectionAckWaitTimeout: CONNECTION_ACK_TIMEOUT_MS,
      on: {
        error: (error) => {
          this.lastSocketError = error;
        },
        connected: () => {
          this.lastSocketError = undefined;
        },
      },
    });
  }

  private failure(error: unknown, timeoutMs: number): ParleyError {
    if (this.shutDown) return closedError();
    if (error instanceof Error && error.name === 'TimeoutError') {
      return new NetworkError(
        'NETWORK',
        `The server at ${this.options.url} did not answer within ${Math.round(timeoutMs / 1000)} s`,
        { reason: 'timeout' },
      );
    }
    const reason = networkReason(error);
    return new NetworkError(
      'NETWORK',
      `Cannot reach the server at ${this.options.url} (${reason.text})`,
      reason.code === undefined ? {} : { cause: reason.code },
    );
  }
}

const REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ECONNABORTED: 'connection aborted',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed',
  UND_ERR_SOCKET: 'connection closed by the server',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'no answer in time',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate',
  CERT_HAS_EXPIRED: 'certificate expired',
  ERR_TLS_CERT_ALTNAME_INVALID: 'certificate for another host',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate not trusted',
};

/**
 * Why a connection failed, in words: the system error code (fetch hides it in `cause`, `ws` in
 * its ErrorEvent's `error`, happy eyeballs in an AggregateError's `errors`) read as a phrase.
 */
export function networkReason(error: unknown): { text: string; code?: string } {
  const seen = new Set<unknown>();
  let current: unknown = error;
  let fallback: string | undefined;
  while (typeof current === 'object' && current !== null && !seen.has(current)) {
    seen.add(current);
    const record = current as {
      code?: unknown;
      message?: unknown;
      cause?: unknown;
      error?: unknown;
      errors?: unknown;
    };
    if (typeof record.code === 'string') {
      return { text: REASONS[record.code] ?? record.code.toLowerCase(), code: record.code };
    }
    if (
      fallback === undefined &&
      typeof record.message === 'string' &&
      record.message !== '' &&
      record.message !== 'fetch failed'
    ) {
      fallback = record.message;
    }
    current =
      record.cause ??
      record.error ??
      (Array.isArray(record.errors) ? (record.errors as unknown[])[0] : undefined);
  }
  return { text: fallback ?? 'no answer' };
}

const CLOSE_MEANINGS: Readonly<Record<number, string>> = {
  1000: 'closed normally',
  1001: 'the server is going away',
  1006: 'connection lost',
  1011: 'server error',
  1012: 'the server is restarting',
  1013: 'the server is busy; try again later',
  4400: 'the server refused a message',
  4408: 'no acknowledgement in time',
  4499: 'connection terminated',
  4500: 'server error',
  4504: 'no acknowledgement in time',
};

/**
 * What a closed or failed live connection means to the app, by the server's close code; `error`
 * is what graphql-ws reports (a CloseEvent, a `ws` ErrorEvent or an Error), `lastSocketError` the
 * socket error that preceded a close, which names its cause.
 */
export function closeError(
  error: unknown,
  url = 'the server',
  lastSocketError?: unknown,
): ParleyError {
  const code = closeCodeOf(error);
  if (UNAUTHORIZED_CLOSE_CODES.has(code as number)) {
    return new UnauthenticatedError(
      'UNAUTHENTICATED',
      `The server closed the live connection: ${describeClose(error)}`,
    );
  }
  if (code === RATE_LIMITED_CLOSE_CODE) {
    // The reason reads "Rate limited; retry after N s".
    const seconds = /retry after (\d+)/.exec(describeClose(error))?.[1];
    return new RateLimitedError(
      'RATE_LIMITED',
      `Too many live connections: ${describeClose(error)}`,
      {
        retryAfterSeconds: Number(seconds ?? 1),
      },
    );
  }
  if (typeof code === 'number') {
    const cause =
      code === 1006 && lastSocketError !== undefined ? networkReason(lastSocketError) : null;
    return new NetworkError(
      'NETWORK',
      cause === null
        ? `The live connection to ${url} ended: ${describeClose(error)}`
        : `Cannot reach the server at ${url} (${cause.text})`,
      { closeCode: code, ...(cause?.code === undefined ? {} : { cause: cause.code }) },
    );
  }
  const reason = networkReason(error);
  return new NetworkError(
    'NETWORK',
    `Cannot reach the server at ${url} (${reason.text})`,
    reason.code === undefined ? {} : { cause: reason.code },
  );
}

function closeCodeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
}

function describeClose(error: unknown): string {
  const code = closeCodeOf(error);
  const reason =
    typeof error === 'object' &&
    error !== null &&
    'reason' in error &&
    typeof error.reason === 'string'
      ? error.reason
      : '';
  const meaning = typeof code === 'number' ? CLOSE_MEANINGS[code] : undefined;
  return `closed with ${String(code)} (${reason === '' ? (meaning ?? 'no reason given') : reason})`;
}
