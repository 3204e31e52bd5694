import { Injectable, Logger } from '@nestjs/common';
import { EventBus } from '../events/event-bus.js';
import { conversationChannel } from '../live/live-event.js';
import { publishCommitted } from '../live/publish.js';
import type { SendMessageInput } from '../messages/message.input.js';
import { MessagesService } from '../messages/messages.service.js';

/**
 * Ephemeral signals (typing indicators, read receipts): MLS application messages the server
 * checks exactly as it checks a message for the log, then publishes once to the conversation's
 * live devices. Nothing is written — no table, no replay buffer, no log line with the bytes — so
 * a device offline when a signal goes out never gets it, which is what a signal is for.
 */
@Injectable()
export class SignalsService {
  private readonly logger = new Logger(SignalsService.name);

  constructor(
    private readonly messages: MessagesService,
    private readonly bus: EventBus,
  ) {}

  /** Checks the signal, then hands it to the bus; true once it is on its way. */
  async send(userId: string, input: SendMessageInput): Promise<boolean> {
    await this.messages.checkEphemeral(userId, input);
    await publishCommitted(this.bus, this.logger, [
      {
        channel: conversationChannel(input.conversationId),
        event: {
          type: 'ephemeral',
          conversationId: input.conversationId,
          senderDeviceId: input.deviceId,
          data: input.message.toString('base64'),
        },
      },
    ]);
    return true;
  }
}
