import { Module } from '@nestjs/common';
import { MessagesModule } from '../messages/messages.module.js';
import { SignalsResolver } from './signals.resolver.js';
import { SignalsService } from './signals.service.js';

/** `sendEphemeral`: typing indicators and read receipts, checked like messages, never stored. */
@Module({ imports: [MessagesModule], providers: [SignalsService, SignalsResolver] })
export class SignalsModule {}
