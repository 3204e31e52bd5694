import { DataSource } from 'typeorm';
import type { TestApp } from './test-app.js';

/**
 * Every row of every table of the app's database as one text to search — bytes as latin1, hex
 * and base64, other values as text — for tests that prove something is stored nowhere.
 */
export async function dumpDatabase(app: TestApp): Promise<{ tables: number; text: string }> {
  const dataSource = app.app.get(DataSource);
  const tables = await dataSource.query<{ name: string }[]>(
    `SELECT table_name AS "name" FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
  );
  const dump: string[] = [];
  for (const { name: table } of tables) {
    const rows = await dataSource.query<Record<string, unknown>[]>(`SELECT * FROM "${table}"`);
    for (const row of rows) {
      for (const value of Object.values(row)) {
        if (value instanceof Uint8Array) {
          const bytes = Buffer.from(value);
          dump.push(bytes.toString('latin1'), bytes.toString('hex'), bytes.toString('base64'));
        } else {
          dump.push(typeof value === 'string' ? value : JSON.stringify(value));
        }
      }
    }
  }
  return { tables: tables.length, text: dump.join('\n') };
}
