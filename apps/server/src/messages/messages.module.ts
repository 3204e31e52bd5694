import { Module } from '@nestjs/common';
import { ConversationsModule } from '../conversations/conversations.module.js';
import { DevicesModule } from '../devices/devices.module.js';
import { ExpirySweeper } from './expiry-sweeper.js';
import { MessageAppender } from './message-appender.js';
import { MessagesResolver } from './messages.resolver.js';
import { MessagesService } from './messages.service.js';
import { RetentionService } from './retention.service.js';

/**
 * Application messages and timer changes into the log (batched per conversation), reading it,
 * cursors, retention, and the deletion of expired messages.
 */
@Module({
  imports: [ConversationsModule, DevicesModule],
  providers: [MessageAppender, MessagesService, MessagesResolver, RetentionService, ExpirySweeper],
  exports: [MessagesService, RetentionService, ExpirySweeper],
})
export class MessagesModule {}
