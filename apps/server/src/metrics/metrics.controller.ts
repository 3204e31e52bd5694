import { Controller, Get, Header, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { Public } from '../auth/public.decorator.js';
import { Metrics } from './metrics.js';

/**
 * GET /metrics in Prometheus text format, with no token: it holds counts and timings, no user,
 * conversation or payload. Operators who must not expose it set PARLEY_METRICS to off, or to an
 * internal address for a listener of its own (then this route does not exist).
 */
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: Metrics) {}

  @Get()
  @Public()
  @Header('Cache-Control', 'no-store')
  async scrape(@Res() reply: FastifyReply): Promise<void> {
    const body = await this.metrics.exposition();
    await reply.header('content-type', this.metrics.contentType).send(body);
  }
}
