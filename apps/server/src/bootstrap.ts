import type { LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { DestinationStream } from 'pino';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { AppModule } from './app.module.js';
import { clientErrorHandler, HttpErrorFilter } from './common/http-errors.js';
import type { Config } from './config/config.js';
import { createLogger, PinoNestLogger } from './logging/logger.js';
import { fastifyLogOptions, installRequestContext } from './logging/request-logging.js';
import { serveWebApp } from './web/web-app.js';

/** How {@link createApp} logs. */
export interface CreateAppOptions {
  /**
   * Unset: JSON lines (pino) for everything, with request ids, to `logStream` or stdout. Set: Nest
   * logs through this instead (false: nowhere), and requests are logged only with a `logStream`.
   */
  logger?: false | LoggerService;
  /** Where the JSON lines go (tests capture them); default stdout. */
  logStream?: DestinationStream;
}

/** Builds the Parley application (not yet listening) from a validated configuration. */
export async function createApp(
  config: Config,
  options: CreateAppOptions = {},
): Promise<NestFastifyApplication> {
  const json =
    options.logger === undefined || options.logStream !== undefined
      ? createLogger(config.logLevel, options.logStream)
      : undefined;
  const { http } = config;
  const adapter = new FastifyAdapter({
    bodyLimit: config.limits.bodyBytes,
    // Slow-header and slow-body sockets are closed, idle ones too: a client cannot hold sockets
    // (and file descriptors) open by trickling bytes. WebSockets leave these once upgraded.
    connectionTimeout: http.idleTimeoutMs,
    clientErrorHandler,
    requestTimeout: http.requestTimeoutMs,
    http: {
      headersTimeout: http.headersTimeoutMs,
      requestTimeout: http.requestTimeoutMs,
      connectionsCheckingInterval: http.connectionsCheckIntervalMs,
    },
    // request.ip (rate limits per address) from X-Forwarded-For only behind trusted proxies.
    ...(config.trustProxyHops === 0
      ? {}
      : { trustProxy: (_address: string, hop: number) => hop < config.trustProxyHops }),
    ...(json === undefined ? {} : fastifyLogOptions(json)),
  });
  if (json !== undefined) installRequestContext(adapter.getInstance());
  const logger = options.logger ?? (json === undefined ? undefined : new PinoNestLogger(json));
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    ...(logger === undefined ? {} : { logger }),
    bufferLogs: false,
    // A failed boot rejects (main prints why and exits 1) instead of aborting the process.
    abortOnError: false,
  });
  app.useGlobalFilters(new HttpErrorFilter(config.limits.bodyBytes));
  // The browser client (apps/web), built by `npm start`, at / next to /graphql.
  serveWebApp(app.getHttpAdapter().getInstance());
  // Past the cap new sockets are closed at once, before the process runs out of descriptors.
  (app.getHttpServer() as { maxConnections: number }).maxConnections = http.maxConnections;
  app.enableShutdownHooks();
  return app;
}
