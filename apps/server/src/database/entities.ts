import { RevokedTokenEntity } from '../auth/revoked-token.entity.js';
import { ServerSecretEntity } from '../accounts/server-secret.entity.js';
import { UserEntity } from '../accounts/user.entity.js';
import { CallEntity, CallParticipantEntity } from '../calls/call.entity.js';
import { CommitResultEntity } from '../conversations/commit-result.entity.js';
import { ConversationMemberEntity } from '../conversations/conversation-member.entity.js';
import { ConversationRoleEntity } from '../conversations/conversation-role.entity.js';
import { ConversationEntity } from '../conversations/conversation.entity.js';
import { WelcomeEntity, WelcomeRecipientEntity } from '../conversations/welcome.entity.js';
import { DeviceEntity } from '../devices/device.entity.js';
import { KeyPackageEntity } from '../key-packages/key-package.entity.js';
import { LogEntryDigestEntity } from '../messages/log-entry-digest.entity.js';
import { LogEntryEntity } from '../messages/log-entry.entity.js';
import { RateLimitEntity } from '../rate-limits/rate-limit.entity.js';

/** Every TypeORM entity; the migrations create exactly these tables (checked by a test). */
export const entities = [
  UserEntity,
  ServerSecretEntity,
  DeviceEntity,
  KeyPackageEntity,
  RateLimitEntity,
  RevokedTokenEntity,
  ConversationEntity,
  ConversationMemberEntity,
  ConversationRoleEntity,
  LogEntryEntity,
  LogEntryDigestEntity,
  CommitResultEntity,
  WelcomeEntity,
  WelcomeRecipientEntity,
  CallEntity,
  CallParticipantEntity,
];
