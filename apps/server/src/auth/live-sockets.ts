import { Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { DomainError } from '../common/domain.errors.js';
import { TokenRevocations } from './token-revocations.js';
import { type TokenCredential, TokenService } from './token.service.js';

/** graphql-ws close code for a socket whose token was revoked (its "Unauthorized"). */
export const TOKEN_REVOKED_CLOSE_CODE = 4401;
/** The close reason that goes with {@link TOKEN_REVOKED_CLOSE_CODE}. */
export const TOKEN_REVOKED_CLOSE_REASON = 'Token revoked';
/** The close reason of a socket whose token expired (same code: the client must sign in). */
export const TOKEN_EXPIRED_CLOSE_REASON = 'Token expired';

// setTimeout's longest delay; an expiry further away is timed again then.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What a registered socket must offer: being closed. */
export interface ClosableSocket {
  close(code: number, reason: string): void;
}

/**
 * A registered socket: what its token established (checked again on revocation, without the
 * token, which is not kept) and the socket to close. {@link LiveSockets.unregister} takes it back.
 */
export interface LiveSocket {
  readonly credential: TokenCredential;
  readonly socket: ClosableSocket;
}

/**
 * The graphql-ws sockets this instance holds, by the user whose token opened them. When any
 * instance revokes tokens of a user, each socket of that user here checks its token again and
 * closes if it no longer holds, so a signed-out token keeps no live connection. After the
 * revocations channel was interrupted, every socket checks its token once it is live again.
 *
 * A socket is also closed when its token expires. Sockets are grouped by their token's `exp`
 * second, and one timer for the whole instance waits for the earliest such second: a timer per
 * socket (with its closures) would cost each idle subscriber about half a KiB of heap.
 */
@Injectable()
export class LiveSockets implements OnModuleDestroy {
  private readonly logger = new Logger(LiveSockets.name);
  private readonly byUser = new Map<string, Set<LiveSocket>>();
  /** Sockets by their token's `exp` (Unix seconds); a second without sockets has no entry. */
  private readonly byExpiry = new Map<number, Set<LiveSocket>>();
  /**
   * A min-heap of the seconds in {@link byExpiry}. A second whose sockets all went stays until it
   * comes up (or the heap is rebuilt), so the heap may hold seconds that are no longer keys.
   */
  private readonly expiries: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The second the timer fires for (+∞ without a timer). */
  private timerFor = Infinity;
  private readonly stopListening: () => void;

  constructor(
    private readonly tokens: TokenService,
    revocations: TokenRevocations,
  ) {
    this.stopListening = revocations.onRevoked((userId) => {
      // null: revocations may have been missed while the bus was interrupted; check them all.
      for (const user of userId === null ? [...this.byUser.keys()] : [userId]) {
        void this.recheck(user);
      }
    });
  }

  onModuleDestroy(): void {
    this.stopListening();
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerFor = Infinity;
  }

  /**
   * Registers a socket by the bearer token it brought; the token itself is not kept. A token that
   * does not verify is refused with its DomainError (the socket is then closed). The socket is
   * closed when the token expires, as it is when the token is revoked.
   */
  async register(token: string, socket: ClosableSocket): Promise<LiveSocket> {
    const credential = await this.tokens.authenticateCredential(token);
    const live: LiveSocket = { credential, socket };
    const { userId } = credential.principal;
    const users = this.byUser.get(userId) ?? new Set<LiveSocket>();
    users.add(live);
    this.byUser.set(userId, users);
    this.expireAt(live);
    return live;
  }

  /** Forgets a registered socket (it closed); nothing happens to a socket already forgotten. */
  unregister(live: LiveSocket): void {
    const { userId } = live.credential.principal;
    const users = this.byUser.get(userId);
    if (users?.delete(live) === true && users.size === 0) this.byUser.delete(userId);
    const second = live.credential.expiresAt;
    const expiring = this.byExpiry.get(second);
    if (expiring?.delete(live) === true && expiring.size === 0) {
      this.byExpiry.delete(second);
      // Churn must not grow the heap with seconds that are gone: rebuild it when mostly stale.
      if (this.expiries.length > 2 * this.byExpiry.size + 64) this.rebuildExpiries();
    }
  }

  private expireAt(live: LiveSocket): void {
    const second = live.credential.expiresAt;
    let expiring = this.byExpiry.get(second);
    if (expiring === undefined) {
      expiring = new Set();
      this.byExpiry.set(second, expiring);
      pushHeap(this.expiries, second);
    }
    expiring.add(live);
    if (second < this.timerFor) this.arm();
  }

  /** Closes the sockets whose tokens have expired, then waits for the next expiry. */
  private expire(): void {
    this.timer = undefined;
    this.timerFor = Infinity;
    // jose's rule: a token is expired once `exp` is not after the current second.
    const now = Math.floor(Date.now() / 1000);
    while (this.expiries.length > 0 && (this.expiries[0] ?? Infinity) <= now) {
      const second = popHeap(this.expiries);
      const expired = this.byExpiry.get(second);
      if (expired === undefined) continue;
      this.byExpiry.delete(second);
      for (const live of expired) {
        this.unregister(live);
        live.socket.close(TOKEN_REVOKED_CLOSE_CODE, TOKEN_EXPIRED_CLOSE_REASON);
      }
    }
    this.arm();
  }

  /** (Re)sets the one timer for the earliest second that still has sockets. */
  private arm(): void {
    while (this.expiries.length > 0 && !this.byExpiry.has(this.expiries[0] ?? NaN)) {
      popHeap(this.expiries);
    }
    const next = this.expiries[0];
    if (next === this.timerFor) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerFor = Infinity;
    if (next === undefined) return;
    this.timerFor = next;
    const delay = Math.min(Math.max(next * 1000 - Date.now(), 0), MAX_TIMER_MS);
    this.timer = setTimeout(() => {
      this.expire();
    }, delay);
    this.timer.unref();
  }

  private rebuildExpiries(): void {
    this.expiries.length = 0;
    for (const second of this.byExpiry.keys()) pushHeap(this.expiries, second);
  }

  private async recheck(userId: string): Promise<void> {
    const sockets = this.byUser.get(userId);
    if (sockets === undefined) return;
    for (const live of [...sockets]) {
      try {
        await this.tokens.recheck(live.credential);
      } catch (error) {
        if (!(error instanceof DomainError)) {
          this.logger.warn(
            `Could not recheck a live socket: ${error instanceof Error ? error.message : String(error)}`,
          );
          continue;
        }
        this.unregister(live);
        live.socket.close(TOKEN_REVOKED_CLOSE_CODE, TOKEN_REVOKED_CLOSE_REASON);
      }
    }
  }
}

function pushHeap(heap: number[], value: number): void {
  let index = heap.push(value) - 1;
  while (index > 0) {
    const parent = (index - 1) >> 1;
    const above = heap[parent] ?? -Infinity;
    if (above <= value) break;
    heap[index] = above;
    index = parent;
  }
  heap[index] = value;
}

function popHeap(heap: number[]): number {
  const top = heap[0] ?? NaN;
  const last = heap.pop() ?? NaN;
  if (heap.length === 0) return top;
  let index = 0;
  for (;;) {
    const left = 2 * index + 1;
    if (left >= heap.length) break;
    const right = left + 1;
    const leftValue = heap[left] ?? Infinity;
    const rightValue = heap[right] ?? Infinity;
    const child = rightValue < leftValue ? right : left;
    const childValue = Math.min(leftValue, rightValue);
    if (last <= childValue) break;
    heap[index] = childValue;
    index = child;
  }
  heap[index] = last;
  return top;
}
