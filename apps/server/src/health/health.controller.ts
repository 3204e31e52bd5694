import { Controller, Get } from '@nestjs/common';
import {
  HealthCheck,
  HealthCheckService,
  HealthIndicatorService,
  TypeOrmHealthIndicator,
} from '@nestjs/terminus';
import { EventBus } from '../events/event-bus.js';

/**
 * Liveness and readiness: the process answers and the database does too. The event bus is
 * reported but never fails the check: without it, writes and reads still work and live clients
 * catch up from the log, so the instance stays in service — `degraded`, HTTP 200.
 */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly database: TypeOrmHealthIndicator,
    private readonly indicators: HealthIndicatorService,
    private readonly bus: EventBus,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([
      () => this.database.pingCheck('database', { timeout: 3000 }),
      () => this.events(),
    ]);
  }

  private events() {
    const { state, backend, queued, lost } = this.bus.status();
    const session = this.indicators.check('events');
    const details = { bus: state, backend, queued, lost };
    return state === 'up' ? session.up(details) : session.degraded(details);
  }
}
