import { ServerSecretEntity } from '../accounts/server-secret.entity.js';
import { UserEntity } from '../accounts/user.entity.js';
import { DeviceEntity } from '../devices/device.entity.js';
import { KeyPackageEntity } from '../key-packages/key-package.entity.js';
import { RateLimitWindowEntity } from '../rate-limits/rate-limit-window.entity.js';

/** Every TypeORM entity; the migrations create exactly these tables (checked by a test). */
export const entities = [
  UserEntity,
  ServerSecretEntity,
  DeviceEntity,
  KeyPackageEntity,
  RateLimitWindowEntity,
];
