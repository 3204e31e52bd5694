import { Global, Module } from '@nestjs/common';
import { RateLimitService } from './rate-limit.service.js';

/** The one rate limiter, for every module that spends server work on a client's behalf. */
@Global()
@Module({ providers: [RateLimitService], exports: [RateLimitService] })
export class RateLimitsModule {}
