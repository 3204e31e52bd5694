import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataOf, errorCodeOf, signUpWithDevice } from './support/graphql.js';
import {
  ownPostgresSkipReason,
  startOwnPostgres,
  type OwnPostgres,
} from './support/own-postgres.js';
import { e2eSkipReason, startTestApp, type TestApp, testDatabase } from './support/test-app.js';

// The outage needs a PostgreSQL of the test's own; it runs once, in the PostgreSQL project.
const skipReason =
  testDatabase !== 'postgres'
    ? 'runs in the e2e:postgres project'
    : (e2eSkipReason ?? ownPostgresSkipReason());
if (skipReason !== undefined && testDatabase === 'postgres') {
  console.warn(`database outage suite skipped: ${skipReason}`);
}

/** Repeats `attempt` until it returns true or `ms` pass; returns how long that took. */
async function within(ms: number, attempt: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (await attempt()) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`not within ${ms} ms`);
}

describe.skipIf(skipReason !== undefined)('a PostgreSQL outage', () => {
  let postgres: OwnPostgres;
  let app: TestApp;
  beforeAll(async () => {
    postgres = await startOwnPostgres();
    app = await startTestApp({ database: { kind: 'postgres', url: postgres.url } });
  });
  afterAll(async () => {
    postgres.thaw();
    await app.close().catch(() => undefined);
    postgres.destroy();
  });

  it('answers SERVICE_UNAVAILABLE quickly while PostgreSQL is down or frozen, and recovers without a restart', async () => {
    const ana = await signUpWithDevice(app);
    const me = () => app.gql<{ me: { id: string } }>(`{ me { id } }`, {}, ana.token);
    expect(dataOf(await me()).me.id).toBe(ana.userId);

    postgres.stop();
    let started = Date.now();
    const down = await me();
    expect(errorCodeOf(down)).toBe('SERVICE_UNAVAILABLE');
    expect(down.errors?.[0]?.extensions).toMatchObject({ retryable: true });
    expect(Date.now() - started).toBeLessThan(6_000);

    postgres.start();
    const recovered = await within(15_000, async () => (await me()).data?.me.id === ana.userId);
    console.log(`database outage: recovered ${recovered} ms after PostgreSQL came back`);

    postgres.freeze();
    started = Date.now();
    const frozen = await me();
    const frozenMs = Date.now() - started;
    expect(errorCodeOf(frozen)).toBe('SERVICE_UNAVAILABLE');
    expect(frozenMs).toBeLessThan(12_000);
    postgres.thaw();
    const thawed = await within(15_000, async () => (await me()).data?.me.id === ana.userId);
    console.log(
      `database outage: frozen PostgreSQL answered in ${frozenMs} ms; served again ${thawed} ms after thawing`,
    );
  });
});
