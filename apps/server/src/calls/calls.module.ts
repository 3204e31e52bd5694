import { Module } from '@nestjs/common';
import { ConversationsModule } from '../conversations/conversations.module.js';
import { CallsResolver } from './calls.resolver.js';
import { CallsService } from './calls.service.js';

/** Calls: who is in which call of a conversation; never media or keys. */
@Module({ imports: [ConversationsModule], providers: [CallsService, CallsResolver] })
export class CallsModule {}
