import { Module } from '@nestjs/common';
import { DevicesModule } from '../devices/devices.module.js';
import { ConversationsResolver } from './conversations.resolver.js';
import { ConversationsService } from './conversations.service.js';

/** MLS groups: epoch-ordered commit bundles, rosters, GroupInfos and Welcomes. */
@Module({
  imports: [DevicesModule],
  providers: [ConversationsService, ConversationsResolver],
  exports: [ConversationsService],
})
export class ConversationsModule {}
