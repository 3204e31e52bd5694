import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { describe, expect, it } from 'vitest';
import { ConfigModule } from '../config/config.module.js';
import { loadConfig } from '../config/config.js';
import { EventBus } from './event-bus.js';
import { EventsUnavailableError } from './events.errors.js';
import { EventsModule } from './events.module.js';
import { InProcessEventBus } from './in-process-event-bus.js';
import { RedisEventBus } from './redis-event-bus.js';

const redisUrl = process.env.PARLEY_TEST_REDIS_URL;

/** An application context with only the configuration and the events module. */
async function boot(env: Record<string, string>) {
  const config = loadConfig(env);
  @Module({ imports: [ConfigModule.forRoot(config), EventsModule] })
  class RootModule {}
  return NestFactory.createApplicationContext(RootModule, { logger: false, abortOnError: false });
}

describe('EventsModule', () => {
  it('provides the in-process bus without REDIS_URL, and closes it on shutdown', async () => {
    const app = await boot({});
    const bus = app.get(EventBus);
    expect(bus).toBeInstanceOf(InProcessEventBus);
    const stream = bus.open(['c']);

    await app.close();
    await expect(stream.next()).rejects.toBeInstanceOf(EventsUnavailableError);
    await expect(bus.publish('c', { type: 'late' })).rejects.toBeInstanceOf(EventsUnavailableError);
  });

  it('refuses to boot when REDIS_URL names an unreachable Redis', async () => {
    await expect(boot({ REDIS_URL: 'redis://127.0.0.1:1' })).rejects.toThrow(
      /Cannot connect to Redis at redis:\/\/127\.0\.0\.1:1 \(REDIS_URL\)/,
    );
  });

  it.skipIf(redisUrl === undefined)('provides the Redis bus with REDIS_URL', async () => {
    const app = await boot({ REDIS_URL: redisUrl ?? '' });
    const bus = app.get(EventBus);
    expect(bus).toBeInstanceOf(RedisEventBus);
    await app.close();
    await expect(bus.publish('c', { type: 'late' })).rejects.toBeInstanceOf(EventsUnavailableError);
  });
});
