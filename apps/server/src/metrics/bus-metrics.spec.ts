import { describe, expect, it } from 'vitest';
import { EventsUnavailableError } from '../events/events.errors.js';
import { InProcessEventBus } from '../events/in-process-event-bus.js';
import { meterEventBus } from './bus-metrics.js';
import { Metrics } from './metrics.js';

async function value(metrics: Metrics, name: string, labels: Record<string, string> = {}) {
  const metric = await metrics.registry.getSingleMetric(name)?.get();
  return (metric?.values ?? [])
    .filter((sample) =>
      Object.entries(labels).every(([key, label]) => String(sample.labels[key]) === label),
    )
    .reduce((sum, sample) => sum + sample.value, 0);
}

describe('meterEventBus', () => {
  it('times each publish, counts the failures and reports the state, leaving outcomes as they were', async () => {
    const metrics = new Metrics();
    const bus = meterEventBus(new InProcessEventBus(), metrics);
    expect(await value(metrics, 'parley_event_bus_state', { state: 'up' })).toBe(1);
    await bus.publish('c', { type: 'ping' });
    await bus.publish('c', { type: 'ping' });
    await bus.close();
    await expect(bus.publish('c', { type: 'ping' })).rejects.toBeInstanceOf(EventsUnavailableError);

    const counts = (await metrics.busPublishDuration.get()).values.filter((sample) =>
      sample.metricName?.endsWith('_count'),
    );
    expect(
      Object.fromEntries(counts.map((sample) => [String(sample.labels.outcome), sample.value])),
    ).toEqual({ ok: 2, failed: 1 });
    expect(await value(metrics, 'parley_event_bus_publish_failures_total')).toBe(1);
    expect(await value(metrics, 'parley_event_bus_state', { state: 'down' })).toBe(1);
  });
});
