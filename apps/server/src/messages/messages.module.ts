import { Module } from '@nestjs/common';
import { ConversationsModule } from '../conversations/conversations.module.js';
import { DevicesModule } from '../devices/devices.module.js';
import { MessageAppender } from './message-appender.js';
import { MessagesResolver } from './messages.resolver.js';
import { MessagesService } from './messages.service.js';
import { RetentionService } from './retention.service.js';

/** Application messages into the log (batched per conversation), reading it, cursors, retention. */
@Module({
  imports: [ConversationsModule, DevicesModule],
  providers: [MessageAppender, MessagesService, MessagesResolver, RetentionService],
  exports: [MessagesService, RetentionService],
})
export class MessagesModule {}
