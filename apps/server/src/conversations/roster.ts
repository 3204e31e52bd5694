/** A device at a leaf of the MLS tree. */
export interface Seat {
  deviceId: string;
  leafIndex: number;
}

/** How a commit changes the roster. */
export interface RosterChange {
  added: Seat[];
  removed: Seat[];
}

/** Why a new roster does not follow from the old one and the commit's proposals. */
export class RosterMismatch extends Error {}

/**
 * Checks the roster read from the new GroupInfo's tree against the old roster and the commit's
 * proposals: every old seat stays at its leaf unless removed, every added device appears once,
 * and nobody else does. Returns what changed; throws RosterMismatch otherwise.
 */
export function rosterChange(
  current: readonly Seat[],
  removedLeaves: readonly number[],
  addedDevices: readonly string[],
  tree: readonly Seat[],
): RosterChange {
  const byLeaf = new Map(current.map((seat) => [seat.leafIndex, seat]));
  const removed: Seat[] = [];
  for (const leaf of new Set(removedLeaves)) {
    const seat = byLeaf.get(leaf);
    if (seat === undefined) throw new RosterMismatch(`Remove names leaf ${leaf}, which is empty`);
    removed.push(seat);
    byLeaf.delete(leaf);
  }
  const adding = new Set(addedDevices);
  if (adding.size !== addedDevices.length) {
    throw new RosterMismatch('The commit adds one device twice');
  }
  const seen = new Set<string>();
  const added: Seat[] = [];
  for (const seat of tree) {
    if (seen.has(seat.deviceId)) {
      throw new RosterMismatch(`Device ${seat.deviceId} holds two leaves`);
    }
    seen.add(seat.deviceId);
    const kept = byLeaf.get(seat.leafIndex);
    if (kept !== undefined) {
      if (kept.deviceId !== seat.deviceId) {
        throw new RosterMismatch(`Leaf ${seat.leafIndex} changed hands without a Remove`);
      }
      continue;
    }
    if (!adding.has(seat.deviceId)) {
      throw new RosterMismatch(
        `Device ${seat.deviceId} appears at leaf ${seat.leafIndex} without an Add`,
      );
    }
    added.push(seat);
  }
  for (const seat of byLeaf.values()) {
    if (!seen.has(seat.deviceId)) {
      throw new RosterMismatch(`Device ${seat.deviceId} left the tree without a Remove`);
    }
  }
  if (added.length !== adding.size) throw new RosterMismatch('An added device is not in the tree');
  return { added, removed };
}
