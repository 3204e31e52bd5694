import type { LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { AppModule } from './app.module.js';
import { HttpErrorFilter } from './common/http-errors.js';
import type { Config } from './config/config.js';

/** Builds the Parley application (not yet listening) from a validated configuration. */
export async function createApp(
  config: Config,
  options: { logger?: false | LoggerService } = {},
): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({ bodyLimit: config.limits.bodyBytes });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    bufferLogs: false,
    // A failed boot rejects (main prints why and exits 1) instead of aborting the process.
    abortOnError: false,
  });
  app.useGlobalFilters(new HttpErrorFilter(config.limits.bodyBytes));
  app.enableShutdownHooks();
  return app;
}
