import { type DynamicModule, Global, Module } from '@nestjs/common';
import type { Config } from '../config/config.js';
import { MetricsController } from './metrics.controller.js';
import { MetricsServer } from './metrics-server.js';
import { Metrics } from './metrics.js';

/**
 * Prometheus metrics: {@link Metrics} for every module that records something, and the scrape
 * endpoint where PARLEY_METRICS puts it (the app's own port, a listener of its own, or nowhere).
 */
@Global()
@Module({})
export class MetricsModule {
  static forRoot(config: Config): DynamicModule {
    return {
      module: MetricsModule,
      providers: [Metrics, MetricsServer],
      controllers: config.metrics.kind === 'app' ? [MetricsController] : [],
      exports: [Metrics, MetricsServer],
    };
  }
}
