import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { formatIdentity, parseIdentity } from '@parley/protocol';
import { DataSource, type EntityManager } from 'typeorm';
import { UserEntity } from '../accounts/user.entity.js';
import { DomainError, forbidden, limitExceeded, notFound } from '../common/domain.errors.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { leaveCalls } from '../calls/call-roster.js';
import { ConversationMemberEntity } from '../conversations/conversation-member.entity.js';
import { ConversationEntity } from '../conversations/conversation.entity.js';
import { promoteIfNoAdmin } from '../conversations/roles.js';
import { EventBus } from '../events/event-bus.js';
import { conversationChannel, deviceChannel } from '../live/live-event.js';
import { type Publication, publishCommitted } from '../live/publish.js';
import type { RegisterDeviceInput } from './device.input.js';
import type { DeviceModel } from './device.model.js';
import { DeviceEntity } from './device.entity.js';
import { newDeviceId } from './device-id.js';

// Raw public keys of the signature schemes MLS ciphersuites use are 32 (Ed25519) to 133 (P-521) bytes.
const MAX_SIGNATURE_KEY_BYTES = 256;

/** Devices of users; the one place that decides whether a user may act for a device. */
@Injectable()
export class DevicesService {
  private readonly logger = new Logger(DevicesService.name);

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly events: EventBus,
  ) {}

  /** The MLS basic-credential identity of a device (its form is `@parley/protocol`'s). */
  identityOf(device: Pick<DeviceEntity, 'id' | 'userId'>): string {
    return formatIdentity({
      userId: device.userId,
      deviceId: device.id,
      domain: this.config.domain,
    });
  }

  /** The user and device an MLS identity names, if it is of the protocol's form and this domain. */
  parseIdentity(identity: Uint8Array): { userId: string; deviceId: string } | null {
    const parsed = parseIdentity(identity);
    if (parsed?.domain !== this.config.domain) return null;
    return { userId: parsed.userId, deviceId: parsed.deviceId };
  }

  /** Registers a new device of the user, within the per-user device limit. */
  async register(userId: string, input: RegisterDeviceInput): Promise<DeviceModel> {
    const signatureKey = input.signatureKey ?? null;
    if (
      signatureKey !== null &&
      (signatureKey.length === 0 || signatureKey.length > MAX_SIGNATURE_KEY_BYTES)
    ) {
      throw new DomainError(
        'BAD_USER_INPUT',
        `signatureKey must be 1–${MAX_SIGNATURE_KEY_BYTES} bytes`,
      );
    }
    const device = await this.dataSource.transaction(async (manager) => {
      // The user row lock serialises registrations, so the device limit holds under concurrency.
      const user = await manager.findOne(UserEntity, {
        where: { id: userId },
        lock: { mode: 'pessimistic_write' },
      });
      if (user === null) throw notFound('User');
      const count = await manager.countBy(DeviceEntity, { userId });
      if (count >= this.config.limits.devicesPerUser) {
        throw limitExceeded('Devices per user', this.config.limits.devicesPerUser);
      }
      return manager.save(
        manager.create(DeviceEntity, {
          id: newDeviceId(),
          userId,
          name: input.name ?? 'device',
          signatureKey,
          keyPackageLowWater: input.keyPackageLowWater ?? this.config.keyPackageLowWater,
        }),
      );
    });
    return this.toModel(device);
  }

  /** The user's devices, oldest first. */
  async list(userId: string): Promise<DeviceModel[]> {
    const devices = await this.dataSource.getRepository(DeviceEntity).find({
      where: { userId },
      order: { createdAt: 'ASC', id: 'ASC' },
    });
    return devices.map((device) => this.toModel(device));
  }

  /**
   * Deletes one of the user's devices with everything it owns (key packages). From the commit
   * on, every read and write naming it fails (it no longer exists); its open subscriptions end
   * with DEVICE_REVOKED (on whichever instance holds them), and each of its conversations is
   * told, so that a member commits the removal of its leaf. Until then its seat stays, marked
   * leaving, so that a member who was offline removes it when it next syncs.
   */
  async delete(userId: string, deviceId: string): Promise<void> {
    const { conversationIds, promotions } = await this.dataSource.transaction(async (manager) => {
      const device = await this.owned(manager, userId, deviceId, { lock: true });
      const seats = await manager.find(ConversationMemberEntity, {
        select: { conversationId: true },
        where: { deviceId: device.id, leaving: false },
      });
      await manager.update(ConversationMemberEntity, { deviceId: device.id }, { leaving: true });
      // Out of its calls before it goes, so that the others hear it left.
      const calls = await leaveCalls(manager, `p."device_id" = $1`, [device.id]);
      await manager.delete(DeviceEntity, { id: device.id });
      // The last admin's last device gone: each group it leaves without an admin gets one
      // (conversations locked in id order, so two deletions cannot deadlock).
      const promotions: Publication[] = [];
      for (const conversationId of seats.map((seat) => seat.conversationId).sort()) {
        const conversation = await manager.findOne(ConversationEntity, {
          where: { id: conversationId },
          lock: { mode: 'pessimistic_write' },
        });
        if (conversation !== null)
          promotions.push(...(await promoteIfNoAdmin(manager, conversation)));
      }
      return {
        conversationIds: seats.map((seat) => seat.conversationId),
        promotions: [...promotions, ...calls],
      };
    });
    // The device's own channel first: its stream ends before anything else reaches it.
    const publications: Publication[] = [
      { channel: deviceChannel(deviceId), event: { type: 'device-revoked', deviceId } },
      ...conversationIds.map((conversationId) => ({
        channel: conversationChannel(conversationId),
        event: { type: 'member-revoked' as const, conversationId, deviceId },
      })),
      ...promotions,
    ];
    await publishCommitted(this.events, this.logger, publications);
  }

  /** Whether the device exists (it was not deleted). */
  async exists(deviceId: string): Promise<boolean> {
    return this.dataSource.getRepository(DeviceEntity).existsBy({ id: deviceId });
  }

  /**
   * The device, if the user owns it: NOT_FOUND when there is no such device, FORBIDDEN when it
   * is another user's. With `lock`, the row stays locked until the transaction ends.
   */
  async owned(
    manager: EntityManager,
    userId: string,
    deviceId: string,
    options: { lock?: boolean } = {},
  ): Promise<DeviceEntity> {
    const device = await manager.findOne(DeviceEntity, {
      where: { id: deviceId },
      ...(options.lock === true ? { lock: { mode: 'pessimistic_write' as const } } : {}),
    });
    if (device === null) throw notFound('Device');
    if (device.userId !== userId) throw forbidden('That device belongs to another user');
    return device;
  }

  /** The API view of a device. */
  toModel(device: DeviceEntity): DeviceModel {
    return {
      id: device.id,
      identity: this.identityOf(device),
      name: device.name,
      signatureKey: device.signatureKey,
      keyPackageLowWater: device.keyPackageLowWater,
      createdAt: device.createdAt,
    };
  }
}
