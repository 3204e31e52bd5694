/**
 * How long a stream waits for a missing entry before reading it from the log. Publishers on
 * other instances reach Redis a few milliseconds apart, so an entry that is late by more than
 * this was most likely never published (the publisher failed or died): reading the log is then
 * cheaper than waiting for it.
 */
export const GAP_WAIT_MS = 150;

/**
 * Entries a stream holds, over all its conversations, while it waits for missing ones. Beyond
 * it the stream reads the log at once instead of holding more: a slow or absent publisher must
 * not grow a subscriber's memory without limit.
 */
export const MAX_HELD = 1000;

/**
 * One event of a conversation's sequence: a log entry, or an event that follows the entry with
 * the same `seq` (a commit's roster change), delivered right after it.
 */
export interface Sequenced<E> {
  seq: bigint;
  follower: boolean;
  event: E;
}

/** A conversation whose missing entries are to be read from the log, after `after`. */
export interface DueGap {
  conversationId: string;
  after: bigint;
}

/** Options of {@link OrderedDelivery}. */
export interface OrderedDeliveryOptions {
  waitMs?: number;
  maxHeld?: number;
  /** The clock, in milliseconds (specs pass their own). */
  now?: () => number;
}

interface Slot<E> {
  entry: E | undefined;
  followers: E[];
}

interface Track<E> {
  /** The last `seq` delivered (or settled: nothing at or before it is delivered any more). */
  last: bigint;
  held: Map<bigint, Slot<E>>;
  /** When the oldest gap still open was seen; undefined while nothing is held. */
  waitingSince: number | undefined;
}

/**
 * Puts one device's live events of each conversation into `seq` order with no gaps, whichever
 * instance published them. Per conversation it knows the last `seq` delivered; an entry that
 * comes early is held until the ones before it arrive, or until {@link GAP_WAIT_MS} passed —
 * then the caller reads the missing entries from the log ({@link due}, {@link fill}). It does
 * no I/O and keeps no timer: the caller asks {@link deadline} when to come back.
 */
export class OrderedDelivery<E> {
  private readonly tracks = new Map<string, Track<E>>();
  private readonly waitMs: number;
  private readonly maxHeld: number;
  private readonly now: () => number;
  private heldCount = 0;

  constructor(options: OrderedDeliveryOptions = {}) {
    this.waitMs = options.waitMs ?? GAP_WAIT_MS;
    this.maxHeld = options.maxHeld ?? MAX_HELD;
    this.now = options.now ?? Date.now;
  }

  /**
   * Follows a conversation from `baseline` on (the conversation's last `seq` when the stream
   * became live, or the entry that added the device): entries at or before it are never
   * delivered. Following it again starts over from the new baseline.
   */
  track(conversationId: string, baseline: bigint): void {
    this.untrack(conversationId);
    this.tracks.set(conversationId, { last: baseline, held: new Map(), waitingSince: undefined });
  }

  /** Stops following a conversation and drops what is held for it. */
  untrack(conversationId: string): void {
    const track = this.tracks.get(conversationId);
    if (track === undefined) return;
    this.heldCount -= countHeld(track);
    this.tracks.delete(conversationId);
  }

  /** Whether the conversation is followed. */
  has(conversationId: string): boolean {
    return this.tracks.has(conversationId);
  }

  /**
   * Delivers an entry at `seq` if it goes out at once, on its own: the conversation is followed,
   * nothing of it is held, and `seq` follows the last delivered. False, and nothing changed,
   * otherwise. {@link accept}'s common case without an event or an array: the caught-up
   * fan-out asks it once per subscriber per message.
   */
  takeNext(conversationId: string, seq: bigint): boolean {
    const track = this.tracks.get(conversationId);
    if (track === undefined || !goesOutAlone(track, seq)) return false;
    track.last = seq;
    return true;
  }

  /** Entries held, over all conversations. */
  get held(): number {
    return this.heldCount;
  }

  /**
   * Takes one event of a followed conversation; returns what may now be delivered, in order
   * (possibly nothing, possibly several held ones). Events of conversations not followed, and
   * entries at or before the last delivered, are dropped.
   */
  accept(conversationId: string, item: Sequenced<E>): E[] {
    const track = this.tracks.get(conversationId);
    if (track === undefined) return [];
    if (item.seq <= track.last) {
      // An entry delivered already (read from the log meanwhile, or sent twice) is dropped; a
      // follower whose entry came from the log arrives late and still goes out — what it says
      // (a roster change) is not in the log, so it is better late than never.
      return item.follower ? [item.event] : [];
    }
    if (!item.follower && goesOutAlone(track, item.seq)) {
      // The common case, per subscriber per event: the next entry, with nothing held.
      track.last = item.seq;
      return [item.event];
    }
    let slot = track.held.get(item.seq);
    if (slot === undefined) {
      slot = { entry: undefined, followers: [] };
      track.held.set(item.seq, slot);
    }
    if (item.follower) {
      slot.followers.push(item.event);
    } else if (slot.entry === undefined) {
      slot.entry = item.event;
    } else {
      return [];
    }
    this.heldCount += 1;
    const out = this.release(track);
    this.settleWait(track);
    return out;
  }

  /**
   * When the next gap is due to be read from the log (a time from the clock), or undefined if
   * nothing is held. Over {@link MAX_HELD} every gap is due now.
   */
  deadline(): number | undefined {
    let earliest: number | undefined;
    for (const track of this.tracks.values()) {
      if (track.waitingSince === undefined) continue;
      const due = track.waitingSince + this.waitMs;
      if (earliest === undefined || due < earliest) earliest = due;
    }
    if (earliest !== undefined && this.heldCount > this.maxHeld) return this.now();
    return earliest;
  }

  /** The conversations whose missing entries are to be read from the log now. */
  due(): DueGap[] {
    const now = this.now();
    const full = this.heldCount > this.maxHeld;
    const gaps: DueGap[] = [];
    for (const [conversationId, track] of this.tracks) {
      if (track.waitingSince === undefined) continue;
      if (full || now - track.waitingSince >= this.waitMs) {
        gaps.push({ conversationId, after: track.last });
      }
    }
    return gaps;
  }

  /**
   * Takes entries read from the log after the conversation's last delivered `seq`, where the
   * read `covered` everything up to and including `covered`: what is neither read nor held
   * there does not exist for this device (retention deleted it), so it is skipped. Returns what
   * may now be delivered, in order.
   */
  fill(conversationId: string, entries: { seq: bigint; event: E }[], covered: bigint): E[] {
    const track = this.tracks.get(conversationId);
    if (track === undefined) return [];
    for (const { seq, event } of entries) {
      if (seq <= track.last || seq > covered) continue;
      const slot = track.held.get(seq);
      if (slot === undefined) {
        track.held.set(seq, { entry: event, followers: [] });
        this.heldCount += 1;
      } else if (slot.entry === undefined) {
        slot.entry = event;
        this.heldCount += 1;
      }
    }
    const out: E[] = [];
    const settled = [...track.held.keys()].filter((seq) => seq <= covered).sort(compare);
    for (const seq of settled) {
      const slot = track.held.get(seq);
      if (slot === undefined) continue;
      if (slot.entry !== undefined) out.push(slot.entry);
      out.push(...slot.followers);
      this.drop(track, seq, slot);
    }
    if (covered > track.last) track.last = covered;
    out.push(...this.release(track));
    // Whatever stays held waits anew: the gap the read closed is not the one left open.
    track.waitingSince = undefined;
    this.settleWait(track);
    return out;
  }

  /** Delivers the held entries that now follow the last delivered one without a gap. */
  private release(track: Track<E>): E[] {
    const out: E[] = [];
    for (;;) {
      const next = track.last + 1n;
      const slot = track.held.get(next);
      if (slot?.entry === undefined) break;
      out.push(slot.entry, ...slot.followers);
      this.drop(track, next, slot);
      track.last = next;
    }
    return out;
  }

  private drop(track: Track<E>, seq: bigint, slot: Slot<E>): void {
    track.held.delete(seq);
    this.heldCount -= (slot.entry === undefined ? 0 : 1) + slot.followers.length;
  }

  private settleWait(track: Track<E>): void {
    if (track.held.size === 0) track.waitingSince = undefined;
    else track.waitingSince ??= this.now();
  }
}

/** Whether an entry at `seq` follows the last delivered with nothing held: it goes out alone. */
function goesOutAlone<E>(track: Track<E>, seq: bigint): boolean {
  return track.held.size === 0 && seq === track.last + 1n;
}

function countHeld<E>(track: Track<E>): number {
  let count = 0;
  for (const slot of track.held.values()) {
    count += (slot.entry === undefined ? 0 : 1) + slot.followers.length;
  }
  return count;
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** What {@link withDeadlines} yields when the deadline passed before the next value came. */
export const DEADLINE = Symbol('deadline');

/**
 * The values of `source`, with {@link DEADLINE} in between whenever the time `deadline()` names
 * (asked afresh before each wait; undefined: no deadline) passes first. The value being waited
 * for is kept, not lost, and the source is never asked for two values at once. A plain iterator,
 * not a generator: it sits on the fan-out's path, once per subscriber per step.
 */
export function withDeadlines<T>(
  source: AsyncIterator<T, unknown>,
  deadline: () => number | undefined,
  now: () => number = Date.now,
): AsyncIterator<T | typeof DEADLINE, void> {
  let pending: Promise<IteratorResult<T, unknown>> | undefined;
  let ended = false;
  const next = async (): Promise<IteratorResult<T | typeof DEADLINE, void>> => {
    if (ended) return { value: undefined, done: true };
    pending ??= source.next();
    const due = deadline();
    let result: IteratorResult<T, unknown> | typeof DEADLINE;
    if (due === undefined) {
      result = await pending;
    } else {
      let timer: NodeJS.Timeout | undefined;
      const wake = new Promise<typeof DEADLINE>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, due - now()), DEADLINE);
      });
      try {
        result = await Promise.race([pending, wake]);
      } finally {
        clearTimeout(timer);
      }
    }
    if (result === DEADLINE) return { value: DEADLINE, done: false };
    pending = undefined;
    if (result.done === true) {
      ended = true;
      return { value: undefined, done: true };
    }
    return { value: result.value, done: false };
  };
  return { next };
}
