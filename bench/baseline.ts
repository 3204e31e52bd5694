/**
 * The raw baseline of Parley's message pipeline, with no GraphQL, no Nest, no TypeORM and no MLS
 * checks: an HTTP POST of a message (JSON, base64), appended to a per-conversation log with
 * the same group commit as Parley's MessageAppender (while one transaction of the conversation
 * runs, new messages queue; the next transaction takes up to 256 of them: one counter bump and
 * one multi-row INSERT), then one JSON frame per message pushed to every WebSocket with `ws`.
 * Same table shapes as Parley's (LIKE … INCLUDING ALL, and the foreign key), same database.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { type WebSocket, WebSocketServer } from 'ws';

const MAX_BATCH = 256;

interface Waiter {
  deviceId: string;
  message: string;
  data: Buffer;
  resolve: (seq: string) => void;
  reject: (error: unknown) => void;
}

/** A running baseline server. */
export interface BaselineServer {
  host: string;
  port: number;
  path: string;
  wsUrl: string;
  conversationId: string;
  close(): Promise<void>;
}

/** Creates the baseline's tables next to Parley's and starts its HTTP and WebSocket servers. */
export async function startBaseline(databaseUrl: string): Promise<BaselineServer> {
  // Parley's pool size, so that neither side has more connections to work with.
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 });
  await pool.query(`
    CREATE TABLE IF NOT EXISTS baseline_conversations (LIKE conversations INCLUDING ALL);
    CREATE TABLE IF NOT EXISTS baseline_log_entries (LIKE log_entries INCLUDING ALL,
      FOREIGN KEY (conversation_id) REFERENCES baseline_conversations (id) ON DELETE CASCADE);
  `);
  const conversationId = randomUUID();
  await pool.query(
    `INSERT INTO baseline_conversations
       (id, group_id, kind, ciphersuite, epoch, last_seq, retained_from_seq, group_info)
     VALUES ($1, $2, 'GROUP', 1, 1, 0, 1, $3)`,
    [conversationId, randomBytes(16), randomBytes(64)],
  );

  const sockets = new Set<WebSocket>();
  const queue: Waiter[] = [];
  let draining = false;

  async function write(batch: Waiter[]): Promise<{ seq: string; createdAt: Date }[]> {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      // The UPDATE takes the conversation's row lock, as Parley's SELECT … FOR UPDATE does.
      const { rows } = await client.query<{ last_seq: string }>(
        `UPDATE baseline_conversations SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq`,
        [conversationId, batch.length],
      );
      const last = BigInt(rows[0]?.last_seq ?? '0');
      const first = last - BigInt(batch.length) + 1n;
      const values: unknown[] = [];
      const tuples = batch.map((waiter, i) => {
        values.push(conversationId, (first + BigInt(i)).toString(), waiter.deviceId, waiter.data);
        const p = i * 4;
        return `($${p + 1}, $${p + 2}, 'APPLICATION', 1, $${p + 3}, $${p + 4})`;
      });
      const inserted = await client.query<{ seq: string; created_at: Date }>(
        `INSERT INTO baseline_log_entries (conversation_id, seq, kind, epoch, sender_device_id, data)
         VALUES ${tuples.join(', ')} RETURNING seq, created_at`,
        values,
      );
      await client.query('COMMIT');
      return inserted.rows.map((row) => ({ seq: row.seq, createdAt: row.created_at }));
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async function drain(): Promise<void> {
    draining = true;
    while (queue.length > 0) {
      const batch = queue.splice(0, MAX_BATCH);
      try {
        const stored = await write(batch);
        stored.forEach((entry, i) => {
          const waiter = batch[i];
          if (waiter === undefined) return;
          const frame = Buffer.from(
            JSON.stringify({
              conversationId,
              seq: Number(entry.seq),
              kind: 'APPLICATION',
              epoch: 1,
              senderDeviceId: waiter.deviceId,
              createdAt: entry.createdAt,
              message: waiter.message,
            }),
          );
          for (const socket of sockets) socket.send(frame);
          waiter.resolve(entry.seq);
        });
      } catch (error) {
        for (const waiter of batch) waiter.reject(error);
      }
    }
    draining = false;
  }

  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      let input: { deviceId: string; message: string };
      try {
        input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof input;
      } catch {
        response.writeHead(400).end();
        return;
      }
      new Promise<string>((resolve, reject) => {
        queue.push({
          deviceId: input.deviceId,
          message: input.message,
          data: Buffer.from(input.message, 'base64'),
          resolve,
          reject,
        });
        if (!draining) void drain();
      }).then(
        (seq) => {
          response
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ seq: Number(seq) }));
        },
        (error: unknown) => {
          response
            .writeHead(500, { 'content-type': 'application/json' })
            .end(JSON.stringify({ error: error instanceof Error ? error.message : 'failed' }));
        },
      );
    });
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.send(JSON.stringify({ type: 'ready' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    host: '127.0.0.1',
    port,
    path: '/send',
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    conversationId,
    async close() {
      for (const socket of sockets) socket.terminate();
      await new Promise<void>((resolve) => {
        wss.close(() => {
          resolve();
        });
      });
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
      await pool.end();
    },
  };
}

/** The body the baseline's load generator posts for one message. */
export function baselineBody(deviceId: string, base64: string): string {
  return JSON.stringify({ deviceId, message: base64 });
}
