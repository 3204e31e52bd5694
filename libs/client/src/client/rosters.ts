/**
 * Which conversations' rosters sync() reads. A roster changes with a commit (the epoch moves),
 * but also without one: a device that leaves gets `leaving`, a deleted device is no longer
 * listed, and both keep their leaf until some member commits its removal. Only the members can
 * make that commit, so a leave or deletion that happened while they were all offline is found
 * by reading the roster. While the live subscription follows a conversation, such changes come
 * as events (LeaveEvent, DeviceRevokedEvent): a roster read then, which asked for nothing to be
 * done, stays good for the rest of that live session until the epoch moves or such an event
 * comes. A new session (the events of the time before it are lost) reads every roster again.
 */

/** Most conversations whose rosters one request reads (~48 KB each at 1,000 members). */
export const ROSTER_PAGE = 10;

/** What one live session of the subscription knows of the rosters it read. */
export class RosterSession {
  private readonly followed: Set<string>;
  // The epoch each roster was last read at, with nothing to be done.
  private readonly settled = new Map<string, number>();
  // Leaves and deletions announced per conversation, so that a read that raced one is not kept.
  private readonly announced = new Map<string, number>();

  /** `followed`: the conversations the subscription follows from its start. */
  constructor(followed: Iterable<string>) {
    this.followed = new Set(followed);
  }

  /** The subscription follows `conversationId` from now on (a Welcome, or this device added). */
  follow(conversationId: string): void {
    this.followed.add(conversationId);
  }

  /** A leave or deletion was announced: the roster is read again at the next sync. */
  changed(conversationId: string): void {
    this.settled.delete(conversationId);
    this.announced.set(conversationId, (this.announced.get(conversationId) ?? 0) + 1);
  }

  /** Whether the roster at `epoch` is known to need nothing, so it need not be read. */
  knows(conversationId: string, epoch: number): boolean {
    return this.settled.get(conversationId) === epoch;
  }

  /**
   * Taken before a roster is read: null if the subscription does not follow the conversation
   * (what the read finds cannot be kept), else what {@link settle} compares with.
   */
  before(conversationId: string): number | null {
    if (!this.followed.has(conversationId)) return null;
    return this.announced.get(conversationId) ?? 0;
  }

  /**
   * The roster read at `epoch` needed nothing: kept, unless a leave or deletion was announced
   * since `before` was taken (the read may predate it).
   */
  settle(conversationId: string, epoch: number, before: number | null): void {
    if (before === null || before !== (this.announced.get(conversationId) ?? 0)) return;
    this.settled.set(conversationId, epoch);
  }
}

/**
 * The pages that read the rosters at `due` (positions in the list, ascending): runs of
 * consecutive due positions, at most `size` long, so that a request is bounded and no roster
 * that is not due is read. Returns inclusive [first, last] positions.
 */
export function rosterPages(due: readonly number[], size = ROSTER_PAGE): [number, number][] {
  const pages: [number, number][] = [];
  for (const position of due) {
    const page = pages.at(-1);
    if (page !== undefined && position === page[1] + 1 && position - page[0] < size) {
      page[1] = position;
    } else {
      pages.push([position, position]);
    }
  }
  return pages;
}
