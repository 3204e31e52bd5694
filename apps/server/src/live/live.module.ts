import { Module } from '@nestjs/common';
import { DevicesModule } from '../devices/devices.module.js';
import { MessagesModule } from '../messages/messages.module.js';
import { LiveResolver } from './live.resolver.js';
import { LiveService } from './live.service.js';

/** The `events` subscription of each device. */
@Module({ imports: [DevicesModule, MessagesModule], providers: [LiveService, LiveResolver] })
export class LiveModule {}
