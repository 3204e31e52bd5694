import type { EntityManager } from 'typeorm';
import { conversationChannel } from '../live/live-event.js';
import type { Publication } from '../live/publish.js';
import { CallChangeValue, CallMediaValue, type CallModel } from './call.model.js';

/**
 * Who is in which call, read and changed inside the caller's transaction, with the live events
 * each change publishes once committed. The one place that removes devices from calls: leaving,
 * a heartbeat that stopped, a device removed from its conversation or deleted.
 */

interface CallRow {
  id: string;
  conversation_id: string;
  media: 'AUDIO' | 'VIDEO';
  started_by_device_id: string;
  started_at: Date;
  ended_at: Date | null;
}

/** The calls' API views (participants with their users), by id; one query for all. */
export async function callViews(
  manager: EntityManager,
  callIds: readonly string[],
): Promise<Map<string, CallModel>> {
  const views = new Map<string, CallModel>();
  if (callIds.length === 0) return views;
  const calls: CallRow[] = await manager.query(
    `SELECT "id", "conversation_id", "media", "started_by_device_id", "started_at", "ended_at"
       FROM "calls" WHERE "id" = ANY($1::uuid[])`,
    [callIds],
  );
  const participants: { call_id: string; device_id: string; user_id: string; joined_at: Date }[] =
    await manager.query(
      `SELECT p."call_id", p."device_id", d."user_id", p."joined_at"
         FROM "call_participants" p JOIN "devices" d ON d."id" = p."device_id"
        WHERE p."call_id" = ANY($1::uuid[])
        ORDER BY p."joined_at", p."device_id"`,
      [callIds],
    );
  for (const call of calls) {
    views.set(call.id, {
      id: call.id,
      conversationId: call.conversation_id,
      media: CallMediaValue[call.media],
      startedByDeviceId: call.started_by_device_id,
      startedAt: call.started_at,
      endedAt: call.ended_at,
      participants: participants
        .filter((row) => row.call_id === call.id)
        .map((row) => ({ deviceId: row.device_id, userId: row.user_id, joinedAt: row.joined_at })),
    });
  }
  return views;
}

/** The live event of a change to `call` made by (or to) `deviceId`. */
export function callPublication(
  call: CallModel,
  change: CallChangeValue,
  deviceId: string,
): Publication {
  return {
    channel: conversationChannel(call.conversationId),
    event: { type: 'call', change, deviceId, call },
  };
}

/**
 * Removes devices from the running calls that `where` selects (an SQL condition on `p`, the
 * participant, and `c`, the call, with `params` from $1), ends each call left empty, and returns
 * the events: LEFT per device removed, then ENDED per call ended.
 */
export async function leaveCalls(
  manager: EntityManager,
  where: string,
  params: unknown[],
): Promise<Publication[]> {
  // In a CTE: TypeORM answers a bare DELETE … RETURNING with [rows, count], a SELECT with rows.
  const left: { call_id: string; device_id: string }[] = await manager.query(
    `WITH "left" AS (
       DELETE FROM "call_participants" p USING "calls" c
        WHERE p."call_id" = c."id" AND c."ended_at" IS NULL AND (${where})
       RETURNING p."call_id", p."device_id"
     )
     SELECT "call_id", "device_id" FROM "left"`,
    params,
  );
  if (left.length === 0) return [];
  const callIds = [...new Set(left.map((row) => row.call_id))];
  await manager.query(
    `UPDATE "calls" c SET "ended_at" = now()
      WHERE c."id" = ANY($1::uuid[]) AND c."ended_at" IS NULL
        AND NOT EXISTS (SELECT 1 FROM "call_participants" p WHERE p."call_id" = c."id")`,
    [callIds],
  );
  const views = await callViews(manager, callIds);
  const publications: Publication[] = [];
  for (const row of left) {
    const call = views.get(row.call_id);
    if (call !== undefined)
      publications.push(callPublication(call, CallChangeValue.LEFT, row.device_id));
  }
  for (const call of views.values()) {
    if (call.endedAt !== null) {
      publications.push(callPublication(call, CallChangeValue.ENDED, call.startedByDeviceId));
    }
  }
  return publications;
}

/** Removes `deviceIds` from the running calls of one conversation (they left it or were removed). */
export function dropFromConversationCalls(
  manager: EntityManager,
  conversationId: string,
  deviceIds: readonly string[],
): Promise<Publication[]> {
  if (deviceIds.length === 0) return Promise.resolve([]);
  return leaveCalls(manager, `c."conversation_id" = $1 AND p."device_id" = ANY($2::text[])`, [
    conversationId,
    deviceIds,
  ]);
}
