import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import {
  errorFromGraphql,
  NetworkError,
  type ParleyError,
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
}

/**
 * Queries and mutations over HTTP, subscriptions over graphql-ws, both with the bearer token;
 * server errors become typed {@link ParleyError}s.
 */
export class GraphqlTransport {
  private token: string | undefined;
  private ws: Client | undefined;

  constructor(private readonly options: TransportOptions) {
    this.token = options.token;
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
    let response: Response;
    try {
      response = await fetch(this.options.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.token === undefined ? {} : { authorization: `Bearer ${this.token}` }),
        },
        body: JSON.stringify({ query: print(document), variables }),
      });
    } catch (error) {
      throw new NetworkError('NETWORK', `Cannot reach ${this.options.url}: ${String(error)}`);
    }
    let body: {
      data?: TResult | null;
      errors?: { message?: unknown; extensions?: Record<string, unknown> }[];
    };
    try {
      body = (await response.json()) as typeof body;
    } catch {
      throw new NetworkError(
        'NETWORK',
        `The server answered HTTP ${response.status} without GraphQL`,
      );
    }
    const [first] = body.errors ?? [];
    if (first !== undefined) throw errorFromGraphql(first);
    if (body.data == null) throw new NetworkError('NETWORK', 'The server answered without data');
    return body.data;
  }

  /** Starts a subscription; returns a function that stops it. */
  subscribe<TResult, TVariables extends Record<string, unknown>>(
    document: TypedDocumentNode<TResult, TVariables>,
    variables: TVariables,
    handlers: SubscriptionHandlers<TResult>,
  ): () => void {
    this.ws ??= createClient({
      url: this.options.url.replace(/^http/, 'ws'),
      connectionParams: () =>
        this.token === undefined ? {} : { authorization: `Bearer ${this.token}` },
      ...(this.options.webSocketImpl === undefined
        ? {}
        : { webSocketImpl: this.options.webSocketImpl }),
      // The SDK resumes from its cursors itself; a dead socket is reported, not silently retried.
      retryAttempts: 0,
      lazy: true,
    });
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
          handlers.error(first !== undefined ? errorFromGraphql(first) : closeError(error));
        },
        complete: () => {
          handlers.complete();
        },
      },
    );
  }

  /** Closes the socket, if any. */
  async close(): Promise<void> {
    await this.ws?.dispose();
    this.ws = undefined;
  }
}

/** What a closed live connection means to the app, by the server's close code. */
export function closeError(error: unknown): ParleyError {
  const code = closeCodeOf(error);
  if (UNAUTHORIZED_CLOSE_CODES.has(code as number)) {
    return new UnauthenticatedError(
      'UNAUTHENTICATED',
      `The server closed the live connection: ${describe(error)}`,
    );
  }
  if (code === RATE_LIMITED_CLOSE_CODE) {
    // The reason reads "Rate limited; retry after N s".
    const seconds = /retry after (\d+)/.exec(describe(error))?.[1];
    return new RateLimitedError('RATE_LIMITED', `Too many live connections: ${describe(error)}`, {
      retryAfterSeconds: Number(seconds ?? 1),
    });
  }
  return new NetworkError('NETWORK', `The live connection failed: ${describe(error)}`);
}

function closeCodeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const reason = 'reason' in error && typeof error.reason === 'string' ? error.reason : '';
    return `closed with ${String(error.code)}${reason === '' ? '' : ` (${reason})`}`;
  }
  return String(error);
}
