import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { validateKeyPackage, type ValidatedKeyPackage } from '@parley/mls';
import { LAST_RESORT_EXTENSION_TYPE } from '@parley/protocol';
import { DataSource, type EntityManager, In } from 'typeorm';
import { UserEntity } from '../accounts/user.entity.js';
import { DomainError, limitExceeded, notFound } from '../common/domain.errors.js';
import { mlsCheck } from '../common/mls-check.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { isUniqueViolation } from '../database/errors.js';
import { DeviceEntity } from '../devices/device.entity.js';
import { DevicesService } from '../devices/devices.service.js';
import { EventBus } from '../events/event-bus.js';
import { deviceChannel, type KeyPackagesLowLiveEvent } from '../live/live-event.js';
import { publishCommitted } from '../live/publish.js';
import { RateLimitService } from '../rate-limits/rate-limit.service.js';
import { KeyPackageEntity } from './key-package.entity.js';
import type {
  ClaimedKeyPackageModel,
  DeviceRefModel,
  KeyPackageClaimModel,
  KeyPackageCountModel,
} from './key-package.model.js';
import { invalidKeyPackage, type KeyPackageSlot } from './key-packages.errors.js';

interface Candidate {
  slot: KeyPackageSlot;
  bytes: Buffer;
  validated: ValidatedKeyPackage;
}

interface ClaimedRow {
  device_id: string;
  data: Buffer;
  ref: Buffer;
}

/** Validated storage and one-time hand-out of MLS key packages (RFC 9750 §5.1). */
@Injectable()
export class KeyPackagesService {
  private readonly logger = new Logger(KeyPackagesService.name);

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly devices: DevicesService,
    private readonly rateLimits: RateLimitService,
    private readonly events: EventBus,
  ) {}

  /**
   * Validates a batch (and optionally a new last-resort key package) for the caller's device and
   * stores all of it, or nothing: the first bad entry rejects the batch, naming its index.
   */
  async upload(
    userId: string,
    deviceId: string,
    keyPackages: readonly Buffer[],
    lastResort: Buffer | undefined,
  ): Promise<KeyPackageCountModel> {
    const { limits } = this.config;
    if (keyPackages.length > limits.keyPackagesPerUpload) {
      throw limitExceeded('Key packages per upload', limits.keyPackagesPerUpload);
    }
    if (keyPackages.length === 0 && lastResort === undefined) {
      throw new DomainError('BAD_USER_INPUT', 'Upload at least one key package');
    }
    // Before the signature checks, which are the costly part.
    await this.rateLimits.consume('keyPackageUploadsPerDevice', `${userId}:${deviceId}`);
    const entries: { slot: KeyPackageSlot; bytes: Buffer }[] = keyPackages.map((bytes, slot) => ({
      slot,
      bytes,
    }));
    if (lastResort !== undefined) entries.push({ slot: 'lastResort', bytes: lastResort });
    for (const { slot, bytes } of entries) {
      if (bytes.length > limits.keyPackageBytes) {
        throw new DomainError(
          'LIMIT_EXCEEDED',
          `Key package ${slot === 'lastResort' ? 'lastResort' : `#${slot}`} exceeds ${limits.keyPackageBytes} bytes`,
          { index: slot === 'lastResort' ? null : slot, limit: limits.keyPackageBytes },
        );
      }
    }

    // Signature checks are CPU work: do them before taking any lock.
    const candidates = await this.validateAll(entries);

    return this.dataSource.transaction(async (manager) => {
      // The device row lock orders concurrent uploads, so binding the signature key and the
      // per-device count are decided once.
      const device = await this.devices.owned(manager, userId, deviceId, { lock: true });
      this.checkOwnership(device, candidates);
      await this.checkDuplicates(manager, candidates);
      await this.purgeExpired(manager, [device.id]);

      const fresh = candidates.filter((candidate) => candidate.slot !== 'lastResort');
      const available = await this.countAvailable(manager, device.id);
      if (available + fresh.length > this.config.limits.keyPackagesPerDevice) {
        throw limitExceeded(
          'Stored key packages per device',
          this.config.limits.keyPackagesPerDevice,
        );
      }
      if (device.signatureKey === null) {
        // Bind the key on first upload; checkOwnership made sure the batch agrees on one key.
        const first = candidates[0];
        if (first !== undefined) {
          device.signatureKey = Buffer.from(first.validated.signatureKey);
          await manager.update(
            DeviceEntity,
            { id: device.id },
            { signatureKey: device.signatureKey },
          );
        }
      }
      const lastResortCandidate = candidates.find((candidate) => candidate.slot === 'lastResort');
      if (lastResortCandidate !== undefined) {
        await manager.delete(KeyPackageEntity, { deviceId: device.id, lastResort: true });
      }
      const rows = candidates.map((candidate) =>
        manager.create(KeyPackageEntity, {
          deviceId: device.id,
          ref: Buffer.from(candidate.validated.ref),
          ciphersuite: candidate.validated.ciphersuite,
          data: candidate.bytes,
          notBefore: candidate.validated.notBefore,
          notAfter: candidate.validated.notAfter,
          lastResort: candidate.slot === 'lastResort',
          claimedAt: null,
          claimedByDeviceId: null,
        }),
      );
      try {
        if (rows.length > 0) await manager.insert(KeyPackageEntity, rows);
      } catch (error) {
        // A concurrent upload of the same key package won the race past checkDuplicates.
        if (isUniqueViolation(error)) {
          throw new DomainError('INVALID_KEY_PACKAGE', 'A key package was uploaded before', {
            reason: 'DUPLICATE',
          });
        }
        throw error;
      }
      return this.countFor(manager, device);
    });
  }

  /** How many key packages the caller's device has left. */
  async count(userId: string, deviceId: string): Promise<KeyPackageCountModel> {
    return this.dataSource.transaction(async (manager) => {
      const device = await this.devices.owned(manager, userId, deviceId);
      return this.countFor(manager, device);
    });
  }

  /**
   * Hands out one key package for every device of every named user except the claiming device,
   * each consumed in this transaction and never handed out twice (row locks with SKIP LOCKED let
   * concurrent claims on any number of instances take different rows). A device with none left
   * gets its last-resort key package, which stays; devices with nothing are reported.
   */
  async claim(
    userId: string,
    claimerDeviceId: string,
    userIds: readonly string[],
  ): Promise<KeyPackageClaimModel> {
    const targets = [...new Set(userIds.map((id) => id.toLowerCase()))];
    const { limits } = this.config;
    if (targets.length > limits.usersPerClaim) {
      throw limitExceeded('Users per claim', limits.usersPerClaim);
    }
    // All or nothing: a refused claim gives its points back, so it counts against no limit.
    await this.rateLimits.consumeAll([
      ...targets.map((target) => ({
        name: 'claimsPerTarget' as const,
        key: `${userId}:${target}`,
      })),
      { name: 'claimsPerUser', key: userId },
    ]);
    const { claim, low } = await this.dataSource.transaction(async (manager) => {
      const claimer = await this.devices.owned(manager, userId, claimerDeviceId);

      const users = await manager.find(UserEntity, {
        select: { id: true },
        where: { id: In(targets) },
      });
      const known = new Set(users.map((user) => user.id));
      const unknown = targets.find((target) => !known.has(target));
      if (unknown !== undefined) throw notFound(`User ${unknown}`);

      const devices = (
        await manager.find(DeviceEntity, {
          select: { id: true, userId: true },
          where: { userId: In(targets) },
          order: { userId: 'ASC', id: 'ASC' },
        })
      ).filter((device) => device.id !== claimer.id);
      const deviceIds = devices.map((device) => device.id);
      await this.purgeExpired(manager, deviceIds);

      const claimed = await this.consumeOnePerDevice(manager, deviceIds, claimer.id);
      const claimedByDevice = new Map(claimed.map((row) => [row.device_id, row]));
      const exhausted = deviceIds.filter((id) => !claimedByDevice.has(id));
      const lastResorts = await this.lastResorts(manager, exhausted);

      const keyPackages: ClaimedKeyPackageModel[] = [];
      const exhaustedDevices: DeviceRefModel[] = [];
      for (const device of devices) {
        const ref = {
          userId: device.userId,
          deviceId: device.id,
          identity: this.devices.identityOf(device),
        };
        const row = claimedByDevice.get(device.id) ?? lastResorts.get(device.id);
        if (row === undefined) exhaustedDevices.push(ref);
        else
          keyPackages.push({
            ...ref,
            keyPackage: row.data,
            ref: row.ref,
            lastResort: !claimedByDevice.has(device.id),
          });
      }
      const withDevices = new Set(devices.map((device) => device.userId));
      return {
        claim: {
          keyPackages,
          exhaustedDevices,
          usersWithoutDevices: targets.filter((target) => !withDevices.has(target)),
        },
        low: await this.runningLow(manager, deviceIds),
      };
    });
    // After commit: tell each device that fell below its low-water mark to upload more.
    await publishCommitted(
      this.events,
      this.logger,
      low.map((event) => ({ channel: deviceChannel(event.deviceId), event })),
    );
    return claim;
  }

  private async runningLow(
    manager: EntityManager,
    deviceIds: string[],
  ): Promise<KeyPackagesLowLiveEvent[]> {
    if (deviceIds.length === 0) return [];
    const rows: { id: string; low_water: number; available: string }[] = await manager.query(
      `SELECT d."id", d."key_package_low_water" AS "low_water", count(k."id") AS "available"
         FROM "devices" d
         LEFT JOIN "key_packages" k ON k."device_id" = d."id" AND k."claimed_at" IS NULL
              AND NOT k."last_resort" AND k."not_after" > now()
        WHERE d."id" = ANY($1::text[])
        GROUP BY d."id"`,
      [deviceIds],
    );
    return rows
      .filter((row) => Number(row.available) < row.low_water)
      .map((row) => ({
        type: 'key-packages-low' as const,
        deviceId: row.id,
        available: Number(row.available),
        lowWater: row.low_water,
      }));
  }

  private async consumeOnePerDevice(
    manager: EntityManager,
    deviceIds: string[],
    claimerDeviceId: string,
  ): Promise<ClaimedRow[]> {
    if (deviceIds.length === 0) return [];
    // One statement for all devices: per device, the oldest available row that no concurrent
    // claim holds. SKIP LOCKED makes a racing claim take the next row instead of waiting, and
    // the UPDATE re-checks "claimed_at IS NULL" against the newest row version.
    // Wrapped in a CTE so that the statement returns its rows like a SELECT on every driver.
    return manager.query(
      `WITH "claimed" AS (
         UPDATE "key_packages" AS k
            SET "claimed_at" = now(), "claimed_by_device_id" = $2
           FROM (SELECT (SELECT kp."id" FROM "key_packages" AS kp
                          WHERE kp."device_id" = d."id" AND kp."claimed_at" IS NULL
                            AND NOT kp."last_resort" AND kp."not_after" > now()
                          ORDER BY kp."id" LIMIT 1
                          FOR UPDATE SKIP LOCKED) AS "id"
                   FROM unnest($1::text[]) AS d("id")) AS picked
          WHERE k."id" = picked."id" AND k."claimed_at" IS NULL
          RETURNING k."device_id", k."data", k."ref")
       SELECT * FROM "claimed"`,
      [deviceIds, claimerDeviceId],
    );
  }

  private async lastResorts(
    manager: EntityManager,
    deviceIds: string[],
  ): Promise<Map<string, ClaimedRow>> {
    if (deviceIds.length === 0) return new Map();
    const rows: ClaimedRow[] = await manager.query(
      `SELECT "device_id", "data", "ref" FROM "key_packages"
        WHERE "device_id" = ANY($1::text[]) AND "last_resort" AND "not_after" > now()`,
      [deviceIds],
    );
    return new Map(rows.map((row) => [row.device_id, row]));
  }

  private async validateAll(
    entries: { slot: KeyPackageSlot; bytes: Buffer }[],
  ): Promise<Candidate[]> {
    const policy = {
      supportedCiphersuites: this.config.supportedCiphersuites,
      maxLifetimeSeconds: this.config.keyPackageMaxLifetimeSeconds,
      clockSkewSeconds: this.config.clockSkewSeconds,
      now: new Date(),
    };
    const candidates: Candidate[] = [];
    for (const { slot, bytes } of entries) {
      const validated = await mlsCheck(
        () => validateKeyPackage(bytes, policy),
        (error) => invalidKeyPackage(slot, error.reason, error.message),
      );
      // The marker decides how claims treat a key package (consumed, or reused when nothing else
      // is left), so it must agree with the slot it was uploaded in.
      const lastResort = validated.extensionTypes.includes(LAST_RESORT_EXTENSION_TYPE);
      if (slot === 'lastResort' && !lastResort) {
        throw invalidKeyPackage(slot, 'NOT_LAST_RESORT', 'it lacks the last_resort extension');
      }
      if (slot !== 'lastResort' && lastResort) {
        throw invalidKeyPackage(
          slot,
          'UNEXPECTED_LAST_RESORT',
          'it carries the last_resort extension; upload it as lastResort',
        );
      }
      candidates.push({ slot, bytes, validated });
    }
    return candidates;
  }

  /** Every key package must name this device and carry its one signature key. */
  private checkOwnership(device: DeviceEntity, candidates: Candidate[]): void {
    const identity = Buffer.from(this.devices.identityOf(device));
    const boundKey = device.signatureKey ?? candidates[0]?.validated.signatureKey;
    for (const { slot, validated } of candidates) {
      if (!identity.equals(validated.identity)) {
        throw invalidKeyPackage(
          slot,
          'WRONG_IDENTITY',
          `credential identity is not ${identity.toString()}`,
        );
      }
      if (boundKey === undefined || !Buffer.from(boundKey).equals(validated.signatureKey)) {
        throw invalidKeyPackage(
          slot,
          'WRONG_SIGNATURE_KEY',
          "signature key is not this device's key",
        );
      }
    }
  }

  private async checkDuplicates(manager: EntityManager, candidates: Candidate[]): Promise<void> {
    const seen = new Set<string>();
    for (const { slot, validated } of candidates) {
      const ref = Buffer.from(validated.ref).toString('hex');
      if (seen.has(ref)) throw invalidKeyPackage(slot, 'DUPLICATE', 'appears twice in the upload');
      seen.add(ref);
    }
    const refs = candidates.map((candidate) => Buffer.from(candidate.validated.ref));
    if (refs.length === 0) return;
    const existing = await manager.find(KeyPackageEntity, {
      select: { ref: true },
      where: { ref: In(refs) },
    });
    const stored = new Set(existing.map((row) => row.ref.toString('hex')));
    const duplicate = candidates.find((candidate) =>
      stored.has(Buffer.from(candidate.validated.ref).toString('hex')),
    );
    if (duplicate !== undefined) {
      throw invalidKeyPackage(duplicate.slot, 'DUPLICATE', 'was uploaded before');
    }
  }

  private async countFor(
    manager: EntityManager,
    device: DeviceEntity,
  ): Promise<KeyPackageCountModel> {
    const available = await this.countAvailable(manager, device.id);
    const lastResort = await manager
      .createQueryBuilder(KeyPackageEntity, 'kp')
      .where('kp.deviceId = :deviceId AND kp.lastResort AND kp.notAfter > now()', {
        deviceId: device.id,
      })
      .getExists();
    return {
      available,
      lastResort,
      lowWater: device.keyPackageLowWater,
      low: available < device.keyPackageLowWater,
    };
  }

  private countAvailable(manager: EntityManager, deviceId: string): Promise<number> {
    return manager
      .createQueryBuilder(KeyPackageEntity, 'kp')
      .where('kp.deviceId = :deviceId AND kp.claimedAt IS NULL AND NOT kp.lastResort', { deviceId })
      .andWhere('kp.notAfter > now()')
      .getCount();
  }

  /** Expired, unclaimed key packages can never be handed out: delete them. */
  private async purgeExpired(manager: EntityManager, deviceIds: string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    await manager.query(
      `DELETE FROM "key_packages" WHERE "device_id" = ANY($1::text[]) AND "claimed_at" IS NULL AND "not_after" <= now()`,
      [deviceIds],
    );
  }
}
