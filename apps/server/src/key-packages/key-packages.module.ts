import { Module } from '@nestjs/common';
import { DevicesModule } from '../devices/devices.module.js';
import { RateLimitsModule } from '../rate-limits/rate-limits.module.js';
import { KeyPackagesResolver } from './key-packages.resolver.js';
import { KeyPackagesService } from './key-packages.service.js';

/** Validated MLS key packages, handed out once each. */
@Module({
  imports: [DevicesModule, RateLimitsModule],
  providers: [KeyPackagesService, KeyPackagesResolver],
  exports: [KeyPackagesService],
})
export class KeyPackagesModule {}
