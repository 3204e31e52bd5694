import { describe, expect, it } from 'vitest';
import { Metrics } from './metrics.js';

describe('Metrics', () => {
  it("reads the bus's state, outbox and losses at scrape time", async () => {
    const metrics = new Metrics();
    let status = { state: 'up', queued: 0, lost: 0 };
    metrics.watchBus(() => status);
    expect(await metrics.registry.metrics()).toContain('parley_event_bus_state{state="up"} 1');
    status = { state: 'down', queued: 7, lost: 3 };
    const text = await metrics.registry.metrics();
    expect(text).toContain('parley_event_bus_state{state="up"} 0');
    expect(text).toContain('parley_event_bus_state{state="down"} 1');
    expect(text).toContain('parley_event_bus_queued 7');
    expect(text).toContain('parley_event_bus_lost_total 3');
  });

  it('exposes process metrics with its own, in the Prometheus text format', async () => {
    const metrics = new Metrics();
    metrics.appended(3, 2);
    const text = await metrics.exposition();
    expect(text).toContain('parley_messages_appended_total 2');
    expect(text).toContain('parley_append_batch_size_sum 3');
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });
});
