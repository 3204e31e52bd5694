import { Global, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { AuthGuard } from './auth.guard.js';
import { AuthResolver } from './auth.resolver.js';
import { LiveSockets } from './live-sockets.js';
import { TokenRevocations } from './token-revocations.js';
import { TokenService } from './token.service.js';

/** Bearer-token authentication for every GraphQL operation (default deny), and signing out. */
@Global()
@Module({
  providers: [
    TokenService,
    TokenRevocations,
    LiveSockets,
    AuthResolver,
    { provide: APP_GUARD, useClass: AuthGuard },
  ],
  exports: [TokenService, LiveSockets],
})
export class AuthModule {}
