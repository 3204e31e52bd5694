import { type DynamicModule, Module } from '@nestjs/common';
import { APP_PIPE } from '@nestjs/core';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { GraphQLModule } from '@nestjs/graphql';
import { AccountsModule } from './accounts/accounts.module.js';
import { AuthModule } from './auth/auth.module.js';
import { LiveSockets } from './auth/live-sockets.js';
import { validationPipe } from './common/validation.pipe.js';
import { ConfigModule } from './config/config.module.js';
import type { Config } from './config/config.js';
import { DatabaseModule } from './database/database.module.js';
import { DevicesModule } from './devices/devices.module.js';
import { graphqlOptions } from './graphql.options.js';
import { HealthModule } from './health/health.module.js';
import { ConversationsModule } from './conversations/conversations.module.js';
import { EventsModule } from './events/events.module.js';
import { KeyPackagesModule } from './key-packages/key-packages.module.js';
import { LiveModule } from './live/live.module.js';
import { MessagesModule } from './messages/messages.module.js';
import { SignalsModule } from './signals/signals.module.js';
import { CallsModule } from './calls/calls.module.js';
import { TokenService } from './auth/token.service.js';
import { withConnectionRateLimits } from './rate-limits/connection-rate-limits.js';
import { RateLimitService } from './rate-limits/rate-limit.service.js';
import { RateLimitsModule } from './rate-limits/rate-limits.module.js';
import { withGraphqlMetrics } from './metrics/graphql-metrics.js';
import { Metrics } from './metrics/metrics.js';
import { MetricsModule } from './metrics/metrics.module.js';

/** The domain modules; the infrastructure (config, database, pub/sub, auth) comes with AppModule. */
export const domainModules = [
  AccountsModule,
  DevicesModule,
  KeyPackagesModule,
  ConversationsModule,
  MessagesModule,
  LiveModule,
  SignalsModule,
  CallsModule,
];

/** Parley's delivery service, configured once at boot. */
@Module({})
export class AppModule {
  static forRoot(config: Config): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        DatabaseModule.forRoot(config),
        MetricsModule.forRoot(config),
        // Async, so that graphql-ws can register each socket with LiveSockets (closed on sign-out).
        GraphQLModule.forRootAsync<ApolloDriverConfig>({
          driver: ApolloDriver,
          inject: [LiveSockets, Metrics, RateLimitService, TokenService],
          useFactory: (
            sockets: LiveSockets,
            metrics: Metrics,
            rateLimits: RateLimitService,
            tokens: TokenService,
          ) =>
            withGraphqlMetrics(
              withConnectionRateLimits(graphqlOptions(config, sockets), {
                rateLimits,
                tokens,
                trustProxyHops: config.trustProxyHops,
                onRefused: (scope) => {
                  metrics.rateLimited(scope);
                },
              }),
              metrics,
            ),
        }),
        EventsModule,
        AuthModule,
        RateLimitsModule,
        HealthModule,
        ...domainModules,
      ],
      providers: [{ provide: APP_PIPE, useValue: validationPipe }],
    };
  }
}
