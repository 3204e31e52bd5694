import { Foundation1795352400000 } from './1795352400000-Foundation.js';
import { Conversations1795353900000 } from './1795353900000-Conversations.js';
import { CommitResults1795360000000 } from './1795360000000-CommitResults.js';
import { LogEntryDigest1795361000000 } from './1795361000000-LogEntryDigest.js';
import { LogEntryDigests1795361100000 } from './1795361100000-LogEntryDigests.js';
import { TokenRevocation1795362000000 } from './1795362000000-TokenRevocation.js';
import { RateLimits1795364000000 } from './1795364000000-RateLimits.js';
import { RateLimitsUnlogged1795364000001 } from './1795364000001-RateLimitsUnlogged.js';
import { DirectConversationsRoles1795370000000 } from './1795370000000-DirectConversationsRoles.js';
import { ClaimedKeyPackages1795372010000 } from './1795372010000-ClaimedKeyPackages.js';
import { MessageTimers1795380000000 } from './1795380000000-MessageTimers.js';
import { Calls1795390000000 } from './1795390000000-Calls.js';

/** Every migration, oldest first. A landed migration is never edited; add a new one here. */
export const migrations = [
  Foundation1795352400000,
  Conversations1795353900000,
  CommitResults1795360000000,
  LogEntryDigest1795361000000,
  LogEntryDigests1795361100000,
  TokenRevocation1795362000000,
  RateLimits1795364000000,
  RateLimitsUnlogged1795364000001,
  DirectConversationsRoles1795370000000,
  ClaimedKeyPackages1795372010000,
  MessageTimers1795380000000,
  Calls1795390000000,
];
