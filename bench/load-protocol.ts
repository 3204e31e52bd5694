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
  /** Per sender, a port that replaces `port` (several instances behind no balancer). */
  senderPorts?: number[];
}

/** One prepared request: its sender, its JSON body, and the key its receipts are matched by. */
export interface PreparedMessage {
  sender: number;
  body: string;
  key: string;
  /** Receipts this message must get; default: every subscriber of the run's set. */
  receipts?: number;
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
      /** `wsUrl` of a device overrides the set's (subscribers spread over instances). */
      devices: { token: string; deviceId: string; wsUrl?: string }[];
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
      /**
       * Seconds after the last send for every response and receipt to arrive; past it the run is
       * incomplete (reported as failed, never as a figure).
       */
      graceSeconds: number;
      /** Seconds more to wait for an incomplete run's stragglers, so none reach the next run. */
      drainSeconds: number;
    }
  /** Closes the subscribers of a set (their messages would otherwise reach the next set's run). */
  | { type: 'close-set'; id: number; set: string }
  | { type: 'close'; id: number };

/** What one run measured on the client side. */
export interface RunResult {
  /**
   * Every intended message was sent and accepted, every receipt arrived within the grace time,
   * none stray, no subscription failed. An incomplete run is a failure, not a figure.
   */
  complete: boolean;
  /** Why the run is incomplete (empty when complete). */
  problems: string[];
  /**
   * An incomplete run's stragglers: ms after the grace time until the last response and receipt
   * arrived (the backlog drained), or null if they had not after `drainSeconds`.
   */
  drainMs: number | null;
  /** Messages the shape meant to send (open loop: rate × seconds). */
  intended: number;
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
