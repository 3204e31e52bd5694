import { Module } from '@nestjs/common';
import { RateLimitService } from './rate-limit.service.js';

/** Database-backed rate limits shared by all server instances. */
@Module({ providers: [RateLimitService], exports: [RateLimitService] })
export class RateLimitsModule {}
