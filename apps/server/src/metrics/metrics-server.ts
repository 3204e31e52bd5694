import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { Metrics } from './metrics.js';

/**
 * /metrics on a listener of its own when PARLEY_METRICS is an address, so that it can be bound
 * to an interface only the monitoring network reaches while the API faces clients.
 */
@Injectable()
export class MetricsServer implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(MetricsServer.name);
  private server: Server | undefined;

  constructor(
    private readonly metrics: Metrics,
    @Inject(CONFIG) private readonly config: Config,
  ) {}

  async onModuleInit(): Promise<void> {
    const { metrics } = this.config;
    if (metrics.kind !== 'listen') return;
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || req.url?.split('?', 1)[0] !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.metrics.exposition().then(
        (body) => {
          res.writeHead(200, { 'content-type': this.metrics.contentType }).end(body);
        },
        (error: unknown) => {
          this.logger.error(error instanceof Error ? (error.stack ?? error.message) : error);
          res.writeHead(500).end();
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(metrics.port, metrics.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.logger.log(`Metrics at ${this.url ?? '?'}`);
  }

  /** Where the listener is, once it listens (null when metrics are served elsewhere or not at all). */
  get url(): string | null {
    const address = this.server?.address();
    if (address == null || typeof address === 'string') return null;
    const { address: host, port } = address satisfies AddressInfo;
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`;
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
    });
  }
}
