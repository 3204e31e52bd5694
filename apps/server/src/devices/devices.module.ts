import { Module } from '@nestjs/common';
import { DevicesResolver } from './devices.resolver.js';
import { DevicesService } from './devices.service.js';

/** Registration, listing and deletion of devices, and ownership checks for other modules. */
@Module({
  providers: [DevicesService, DevicesResolver],
  exports: [DevicesService],
})
export class DevicesModule {}
