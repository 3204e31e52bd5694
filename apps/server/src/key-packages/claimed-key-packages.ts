import type { DataSource, EntityManager } from 'typeorm';

/**
 * Rows one purge statement deletes at most: short statements hold few row locks, so claims and
 * uploads on the same devices never wait long behind a sweep.
 */
export const CLAIMED_PURGE_BATCH = 500;

/**
 * Deletes the claimed key package behind a device's Welcome as the device acknowledges it, in the
 * acknowledging transaction (call it before the Welcome's recipient row goes). Nothing needs the
 * row any more: the Welcome was routed by the KeyPackageRef copied into `welcome_recipients` when
 * the commit was accepted, and a key package is used once (RFC 9420 §16.8), so a later Add that
 * names it again is refused as UNCLAIMED_KEY_PACKAGE. A last-resort key package stays: it is the
 * device's only way to be added while it has nothing else.
 */
export async function purgeAcknowledgedKeyPackage(
  manager: EntityManager,
  welcomeId: string,
  deviceId: string,
): Promise<void> {
  await manager.query(
    `DELETE FROM "key_packages" k USING "welcome_recipients" r
      WHERE r."welcome_id" = $1 AND r."device_id" = $2
        AND k."ref" = r."key_package_ref" AND k."device_id" = r."device_id"
        AND k."claimed_at" IS NOT NULL AND NOT k."last_resort"`,
    [welcomeId, deviceId],
  );
}

/**
 * Deletes key packages claimed more than `days` days ago, in batches of at most `batch` rows until
 * none is left; returns how many this call deleted. Each batch locks its rows with SKIP LOCKED, so
 * sweeps on several instances at once take different rows: each row is deleted once, and no
 * sweep waits for another. Unclaimed and last-resort rows are never touched (a last-resort row is
 * never marked claimed; the condition says so anyway). A Welcome not yet delivered still routes:
 * its recipient row carries its own copy of the KeyPackageRef.
 */
export async function purgeClaimedKeyPackages(
  dataSource: DataSource,
  days: number,
  batch = CLAIMED_PURGE_BATCH,
): Promise<number> {
  let total = 0;
  for (;;) {
    // Wrapped in a CTE so that the statement returns its count like a SELECT on every driver.
    const [row] = await dataSource.query<{ deleted: number }[]>(
      `WITH "purged" AS (
         DELETE FROM "key_packages" WHERE "id" IN (
           SELECT "id" FROM "key_packages"
            WHERE "claimed_at" IS NOT NULL AND NOT "last_resort"
              AND "claimed_at" < now() - make_interval(days => $1)
            ORDER BY "claimed_at" LIMIT $2
            FOR UPDATE SKIP LOCKED)
         RETURNING 1)
       SELECT count(*)::int AS "deleted" FROM "purged"`,
      [days, batch],
    );
    const deleted = row?.deleted ?? 0;
    total += deleted;
    if (deleted < batch) return total;
  }
}
