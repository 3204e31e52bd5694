/** Messages between the benchmark's main thread (servers) and its load thread (clients). */
import type { LatencySummary } from './stats.js';

/** Where a sender posts, and as whom. */
export interface Target {
  host: string;
  port: number;
  path: string;
  /** One bearer token per sender (null: no authorization header, the baseline). */
  tokens: (string | null)[];
  /** Keep-alive sockets per sender: how many of its requests may be in flight at once. */
  socketsPerSender: number;
}

/** One prepared request: its sender, its JSON body, and the key its receipts are matched by. */
export interface PreparedMessage {
  sender: number;
  body: string;
  key: string;
}

/** Open loop: a fixed offered rate; closed loop: a fixed number of messages not yet delivered. */
export type LoadShape =
  | { kind: 'open'; rate: number; seconds: number }
  | { kind: 'closed'; window: number; seconds: number };

/** Requests from the main thread. */
export type LoadRequest =
  | {
      type: 'subscribe-parley';
      id: number;
      /** A name for this set of subscribers; a run names the set that receives its messages. */
      set: string;
      wsUrl: string;
      devices: { token: string; deviceId: string }[];
    }
  | { type: 'subscribe-baseline'; id: number; set: string; wsUrl: string; count: number }
  /** Stores prepared messages under a name, for runs to use (each at most once per run). */
  | { type: 'messages'; id: number; pool: string; messages: PreparedMessage[] }
  | {
      type: 'run';
      id: number;
      set: string;
      target: Target;
      /** The stored messages to send, in order, from the first. */
      pool: string;
      shape: LoadShape;
    }
  | { type: 'close'; id: number };

/** What one run measured on the client side. */
export interface RunResult {
  /** Messages the run posted. */
  sent: number;
  /** Of which the server accepted (2xx, no GraphQL errors). */
  accepted: number;
  failed: number;
  firstError: string | null;
  /** Receipts expected (accepted × subscribers) and received. */
  expectedReceipts: number;
  receipts: number;
  /** Receipts of messages this run did not send (none expected). */
  stray: number;
  /** Subscription errors (e.g. a slow consumer cut off). */
  subscriptionErrors: number;
  /** From first send to the last receipt, in seconds. */
  seconds: number;
  /** Messages posted per second over the sending window (intended times). */
  offeredRate: number;
  /** Messages fully delivered (every subscriber got it) per second, from first send to last. */
  deliveredRate: number;
  /** Send (intended time) to each receipt, ms. */
  latency: LatencySummary;
  /** Send (intended time) to the HTTP response, ms. */
  ack: LatencySummary;
  /** CPU of the load thread over the run (ms), and the share of time its event loop was busy. */
  clientCpuMs: number;
  clientElu: number;
}

/** Answers from the load thread. */
export type LoadResponse =
  | { type: 'ok'; id: number }
  | { type: 'result'; id: number; result: RunResult }
  | { type: 'error'; id: number; message: string };

/** Characters of a message's base64 that identify it: the tail, inside its AEAD tag. */
export const RECEIPT_KEY_CHARS = 24;

/** The key a message's receipts are matched by (its base64 tail). */
export function receiptKey(base64: string): string {
  return base64.slice(-RECEIPT_KEY_CHARS);
}
