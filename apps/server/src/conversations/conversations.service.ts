import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import {
  type GroupInfoMessage,
  type InspectedCommit,
  type RosterLeaf,
  type VerifiedGroupInfo,
  verifyGroupInfo,
} from '@parley/mls';
import { toHex } from '@parley/protocol';
import { DataSource, type EntityManager, In } from 'typeorm';
import { DomainError, limitExceeded, notFound } from '../common/domain.errors.js';
import { mlsCheck } from '../common/mls-check.js';
import { isUuid } from '../common/uuid.js';
import { CONFIG } from '../config/config.module.js';
import type { Config } from '../config/config.js';
import { isUniqueViolation } from '../database/errors.js';
import { DeviceEntity } from '../devices/device.entity.js';
import { DevicesService } from '../devices/devices.service.js';
import { EventBus } from '../events/event-bus.js';
import { purgeAcknowledgedKeyPackage } from '../key-packages/claimed-key-packages.js';
import { KeyPackageEntity } from '../key-packages/key-package.entity.js';
import { conversationChannel, deviceChannel } from '../live/live-event.js';
import { type Publication, publishCommitted } from '../live/publish.js';
import { appendToLog, logEntryPublication } from '../messages/conversation-log.js';
import { dropFromConversationCalls } from '../calls/call-roster.js';
import { ConversationMemberEntity } from './conversation-member.entity.js';
import { ConversationEntity, type ConversationState } from './conversation.entity.js';
import type {
  CreateConversationInput,
  SetMemberRoleInput,
  SubmitCommitBundleInput,
} from './conversation.input.js';
import {
  type CommitResultModel,
  ConversationKindValue,
  type ConversationMemberModel,
  ConversationRoleValue,
  type ConversationSummary,
  type WelcomeModel,
} from './conversation.model.js';
import {
  checkConversationsFirst,
  type ConversationRow,
  conversationCursor,
  conversationPage,
  conversationRow,
  groupInfosOf,
  membersOf,
  parseConversationCursor,
} from './conversation-reads.js';
import {
  futureEpoch,
  invalidCommit,
  invalidGroupInfo,
  notAMember,
  staleEpoch,
} from './conversations.errors.js';
import type { RosterChange } from './roster.js';
import { WelcomeEntity, WelcomeRecipientEntity } from './welcome.entity.js';
import {
  bundleDigest,
  checkCommitAgainstEpoch,
  checkCommitGroup,
  checkFirstCommit,
  checkGroupInfoTarget,
  checkNewGroupInfo,
  checkRoster,
  checkSender,
  checkWelcome,
  type DecodedBundle,
  decodeBundle,
  StoredGroupInfos,
} from './commit-bundle.checks.js';
import { CommitResultEntity } from './commit-result.entity.js';
import { ConversationRoleEntity } from './conversation-role.entity.js';
import {
  checkNewDirect,
  directConversationExists,
  directPair,
  existingDirect,
  peerOf,
} from './direct.js';
import { applyRosterChange, authorizeCommit, promoteIfNoAdmin, setRole } from './roles.js';
import {
  checkExternalCommitAgainstEpoch,
  checkJoinerIdentity,
  isExternalCommit,
  notAMemberUser,
} from './external-commit.checks.js';
import type { JoinableConversationModel } from './joinable-conversation.model.js';

/**
 * Longest MLS group id accepted. RFC 9420 allows up to 2^30 bytes, but a group id only needs to
 * be unique: clients draw 16–32 random bytes (ts-mls, OpenMLS), and the unique index on it
 * cannot hold values of a few kilobytes.
 */
export const MAX_GROUP_ID_BYTES = 255;

/**
 * Ids of the conversations device $2 of user $1 may join by external commit: its user holds a
 * seat through another device that is not leaving (or is one of a DM's pair), the device holds none, and it never held one
 * (the answers of accepted commits, kept as long as the conversation, name every device a commit
 * added or removed).
 */
const JOINABLE_SQL = `SELECT c."id" FROM "conversations" c
  WHERE c."group_info" IS NOT NULL
    AND (EXISTS (SELECT 1 FROM "conversation_members" m JOIN "devices" d ON d."id" = m."device_id"
                  WHERE m."conversation_id" = c."id" AND d."user_id" = $1 AND NOT m."leaving")
         OR (c."kind" = 'DIRECT' AND $1 IN (c."direct_user_low", c."direct_user_high")))
    AND NOT EXISTS (SELECT 1 FROM "conversation_members" m
                     WHERE m."conversation_id" = c."id" AND m."device_id" = $2)
    AND NOT EXISTS (SELECT 1 FROM "commit_results" r
                     WHERE r."conversation_id" = c."id"
                       AND ($2 = ANY(r."added_device_ids") OR $2 = ANY(r."removed_device_ids")))`;

/** Every column of a conversation but its GroupInfo, which no work under the row lock reads. */
const LOCKED_COLUMNS = {
  id: true,
  groupId: true,
  kind: true,
  directUserLow: true,
  directUserHigh: true,
  ciphersuite: true,
  epoch: true,
  lastSeq: true,
  retainedFromSeq: true,
  messageTimerSeconds: true,
  createdAt: true,
} satisfies Record<keyof ConversationState, true>;

/**
 * Conversations: MLS groups with one epoch on the server, advanced only by commit bundles that
 * win their epoch (RFC 9750 §5.2), their rosters, GroupInfos and Welcomes.
 */
@Injectable()
export class ConversationsService {
  private readonly logger = new Logger(ConversationsService.name);
  private readonly storedGroupInfos = new StoredGroupInfos();

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly devices: DevicesService,
    private readonly events: EventBus,
  ) {}

  /** Registers a group the caller's device created: epoch 0, the device alone at leaf 0. */
  async create(userId: string, input: CreateConversationInput): Promise<ConversationSummary> {
    if (input.groupId.length === 0 || input.groupId.length > MAX_GROUP_ID_BYTES) {
      throw new DomainError('BAD_USER_INPUT', `groupId must be 1–${MAX_GROUP_ID_BYTES} bytes`, {
        field: 'groupId',
        limit: MAX_GROUP_ID_BYTES,
      });
    }
    const pair = directPair(userId, input);
    const start = await this.startingPoint(input);
    if (!this.config.supportedCiphersuites.includes(start.ciphersuite)) {
      throw invalidGroupInfo(
        'UNSUPPORTED_CIPHERSUITE',
        `Ciphersuite ${start.ciphersuite} is not accepted`,
      );
    }
    let created: ConversationSummary;
    try {
      created = await this.dataSource.transaction(async (manager) => {
        const device = await this.devices.owned(manager, userId, input.deviceId);
        if (start.creator !== null) {
          const { leafIndex, identity, signatureKey } = start.creator;
          if (
            leafIndex !== 0 ||
            this.devices.parseIdentity(identity)?.deviceId !== device.id ||
            !this.signatureKeyMatches(device, signatureKey)
          ) {
            throw invalidGroupInfo(
              'WRONG_ROSTER',
              'A new group holds exactly the creating device, at leaf 0',
            );
          }
        }
        if (pair !== null) await checkNewDirect(manager, pair);
        const conversation = await manager.save(
          manager.create(ConversationEntity, {
            id: randomUUID(),
            groupId: input.groupId,
            kind: input.kind,
            directUserLow: pair?.low ?? null,
            directUserHigh: pair?.high ?? null,
            ciphersuite: start.ciphersuite,
            epoch: '0',
            lastSeq: '0',
            retainedFromSeq: '1',
            groupInfo: input.groupInfo ?? null,
          }),
        );
        await manager.insert(ConversationMemberEntity, {
          conversationId: conversation.id,
          deviceId: device.id,
          leafIndex: 0,
          joinedSeq: '0',
          ackedSeq: '0',
        });
        // The creator of a group is its admin; in a direct conversation both users are.
        await manager.insert(ConversationRoleEntity, {
          conversationId: conversation.id,
          userId,
          role: 'ADMIN',
          joinedSeq: '0',
        });
        return this.view(manager, conversation.id, device.id, userId);
      });
    } catch (error) {
      if (isUniqueViolation(error) && pair !== null) {
        // The other user (on any instance) created the pair's conversation first: this
        // transaction stored nothing, and the caller is told which one to join instead.
        const existing = await existingDirect(this.dataSource.manager, pair);
        if (existing !== null) throw directConversationExists(existing.id);
      }
      if (isUniqueViolation(error)) {
        throw new DomainError('CONFLICT', 'A conversation with that group id exists');
      }
      throw error;
    }
    // The creator's live stream follows the new conversation from now on (see LiveService).
    await publishCommitted(this.events, this.logger, [
      {
        channel: deviceChannel(input.deviceId),
        event: {
          type: 'roster',
          conversationId: created.id,
          seq: '0',
          epoch: '0',
          added: [input.deviceId],
          removed: [],
        },
      },
    ]);
    return created;
  }

  /**
   * Accepts a commit for the conversation's current epoch E with its GroupInfo for E+1 and, when
   * it adds members, their Welcome — all in one transaction that moves the epoch to E+1. Every
   * other commit for E then fails with STALE_EPOCH, on any instance: the conversation row lock
   * orders them and the loser sees the new epoch. The same bundle again, from the device that
   * sent it, gets the answer it got when it won.
   */
  async submitCommitBundle(
    userId: string,
    input: SubmitCommitBundleInput,
  ): Promise<CommitResultModel> {
    this.checkSize('commit', input.commit);
    this.checkSize('groupInfo', input.groupInfo);
    if (input.welcome != null) this.checkSize('welcome', input.welcome);
    // The stored GroupInfo of E does not change while the conversation is at E, so it is read
    // without the lock, and all MLS work (CPU that grows with the group) happens before the lock.
    const manager = this.dataSource.manager;
    const device = await this.devices.owned(manager, userId, input.deviceId);
    const target = await this.conversation(manager, input.conversationId);
    const checked = await this.checkBundle({ input, device, conversation: target });
    if ('replayed' in checked) return checked.replayed;
    const { bundle, groupInfo, digest } = checked;
    const commit = bundle.commit.inspected;
    const epoch = BigInt(target.epoch);

    const outcome = await this.dataSource.transaction(async (manager) => {
      const device = await this.devices.owned(manager, userId, input.deviceId);
      const conversation = await this.lockedConversation(manager, input.conversationId);
      if (BigInt(conversation.epoch) !== epoch) {
        // Another commit won E while this one was being verified — or this very bundle did.
        const replay = await this.replayedResult(manager, conversation, epoch, device.id, digest);
        return { result: replay, events: [] };
      }
      // Plain rows: hydrating a thousand member entities cost more than the query.
      const roster = await manager.query<
        { deviceId: string; leafIndex: number; leaving: boolean }[]
      >(
        `SELECT "device_id" AS "deviceId", "leaf_index" AS "leafIndex", "leaving"
           FROM "conversation_members" WHERE "conversation_id" = $1`,
        [conversation.id],
      );
      const external = isExternalCommit(commit);
      if (external) {
        // Checked again under the lock: the user's last seat may have gone meanwhile.
        await this.checkJoinable(manager, device, conversation.id);
      } else {
        const senderSeat = roster.find((seat) => seat.deviceId === device.id);
        if (senderSeat === undefined || senderSeat.leaving) throw notAMember();
        checkSender(commit, senderSeat);
      }

      const adds = external ? [] : await this.addedDevices(manager, commit);
      const change = checkRoster(
        roster.map((seat) => ({ deviceId: seat.deviceId, leafIndex: seat.leafIndex })),
        commit,
        groupInfo,
        // An external commit adds exactly its joiner, the submitting device.
        external ? [device.id] : adds.map((add) => add.deviceId),
        (identity) => this.devices.parseIdentity(identity)?.deviceId ?? null,
      );
      if (
        roster.length - change.removed.length + change.added.length >
        this.config.limits.membersPerConversation
      ) {
        throw limitExceeded('Members per conversation', this.config.limits.membersPerConversation);
      }
      if (change.removed.some((seat) => seat.deviceId === device.id)) {
        // A member leaves by asking another member to remove it (a proposal), not by committing.
        throw invalidCommit('SELF_REMOVE', 'A commit cannot remove its own sender');
      }
      checkWelcome(
        bundle.welcomeRefs,
        adds.map((add) => add.ref),
      );
      // The users of the added devices are known already: their rows were just read, under the lock.
      const known = new Map(
        external ? [[device.id, device.userId]] : adds.map((add) => [add.deviceId, add.userId]),
      );
      const users = await authorizeCommit(manager, conversation, userId, roster, change, known);
      const stored = await this.storeCommit(
        manager,
        conversation,
        device.id,
        input,
        adds,
        change,
        users,
        digest,
      );
      stored.events.push(...(await this.joinableEvents(manager, conversation, change)));
      return stored;
    });
    // Published only once committed: a subscriber never hears of what a rollback undid.
    await publishCommitted(this.events, this.logger, outcome.events);
    // Most likely what the conversation now stores (or a replay's, which the bytes check skips).
    this.storedGroupInfos.remember(input.conversationId, input.groupInfo, bundle.groupInfo);
    return outcome.result;
  }

  /**
   * Everything about a bundle that needs no lock (bench/server.ts times it by this name): decoding,
   * the epoch (a replay of the bundle that won an earlier one gets its answer back), the sender's
   * seat, and the MLS checks against the stored GroupInfo of the epoch and of the new GroupInfo.
   */
  private async checkBundle({
    input,
    device,
    conversation,
  }: {
    input: SubmitCommitBundleInput;
    device: DeviceEntity;
    conversation: ConversationEntity;
  }): Promise<
    | { replayed: CommitResultModel }
    | { bundle: DecodedBundle; groupInfo: VerifiedGroupInfo; digest: Buffer }
  > {
    const manager = this.dataSource.manager;
    // First: its tree is what the new GroupInfo's is decoded against.
    const previous = await this.storedGroupInfo(conversation);
    const bundle = await decodeBundle(input, this.config.limits.commitBundleBytes, previous);
    const commit = bundle.commit.inspected;
    const digest = bundleDigest(input);
    checkCommitGroup(commit, conversation.groupId);
    const epoch = BigInt(conversation.epoch);
    if (commit.epoch < epoch) {
      return {
        replayed: await this.replayedResult(manager, conversation, commit.epoch, device.id, digest),
      };
    }
    if (commit.epoch > epoch) throw futureEpoch(conversation.epoch);
    if (isExternalCommit(commit)) {
      await this.checkJoinable(manager, device, conversation.id);
      checkJoinerIdentity(commit, device, this.devices.identityOf(device));
      checkGroupInfoTarget(bundle.groupInfo, conversation.groupId, epoch);
      await checkExternalCommitAgainstEpoch(bundle, previous);
      return { bundle, groupInfo: await checkNewGroupInfo(bundle, previous), digest };
    }
    const seat = await manager.findOneBy(ConversationMemberEntity, {
      conversationId: conversation.id,
      deviceId: device.id,
    });
    if (seat === null || seat.leaving) throw notAMember();
    checkSender(commit, seat);
    checkGroupInfoTarget(bundle.groupInfo, conversation.groupId, epoch);
    if (previous !== null) {
      await checkCommitAgainstEpoch(bundle, previous);
      return { bundle, groupInfo: await checkNewGroupInfo(bundle, previous), digest };
    }
    const groupInfo = await checkNewGroupInfo(bundle, null);
    // A device that registered no signature key and uploaded no key package has none bound
    // yet; its own leaf's key (the roster check ties that leaf to the device) stands in.
    const creatorKey =
      device.signatureKey ?? groupInfo.leaves.find((leaf) => leaf.leafIndex === 0)?.signatureKey;
    if (creatorKey === undefined) throw invalidCommit('WRONG_SIGNER', 'Leaf 0 is blank');
    if (!(await checkFirstCommit(bundle, creatorKey))) {
      this.logger.log(
        `The first commit of conversation ${conversation.id} has a path: its signature over the unknown epoch-0 context is not verifiable`,
      );
    }
    return { bundle, groupInfo, digest };
  }

  /** Stores an accepted bundle: log entry, epoch, GroupInfo, roster, Welcome, and its answer. */
  private async storeCommit(
    manager: EntityManager,
    conversation: ConversationState,
    deviceId: string,
    input: SubmitCommitBundleInput,
    adds: { deviceId: string; ref: Buffer }[],
    change: RosterChange,
    users: ReadonlyMap<string, string>,
    digest: Buffer,
  ): Promise<{ result: CommitResultModel; events: Publication[] }> {
    const newEpoch = (BigInt(conversation.epoch) + 1n).toString();
    const [entry] = await appendToLog(manager, conversation, [
      {
        kind: 'COMMIT',
        epoch: conversation.epoch,
        senderDeviceId: deviceId,
        data: input.commit,
        digest: null,
      },
    ]);
    if (entry === undefined) throw new Error('The commit was not appended');
    const seq = entry.seq;
    await manager.update(
      ConversationEntity,
      { id: conversation.id },
      { epoch: newEpoch, groupInfo: input.groupInfo },
    );
    const result: CommitResultModel = {
      conversationId: conversation.id,
      seq,
      epoch: newEpoch,
      addedDeviceIds: change.added.map((seat) => seat.deviceId),
      removedDeviceIds: change.removed.map((seat) => seat.deviceId),
    };
    await manager.insert(CommitResultEntity, {
      conversationId: conversation.id,
      epoch: conversation.epoch,
      seq,
      senderDeviceId: deviceId,
      bundleDigest: digest,
      addedDeviceIds: result.addedDeviceIds,
      removedDeviceIds: result.removedDeviceIds,
    });
    if (change.removed.length > 0) {
      await manager.delete(ConversationMemberEntity, {
        conversationId: conversation.id,
        deviceId: In(change.removed.map((seat) => seat.deviceId)),
      });
    }
    if (change.added.length > 0) {
      await manager.insert(
        ConversationMemberEntity,
        change.added.map((seat) => ({
          conversationId: conversation.id,
          deviceId: seat.deviceId,
          leafIndex: seat.leafIndex,
          joinedSeq: seq,
          ackedSeq: seq,
        })),
      );
    }
    const events: Publication[] = [logEntryPublication(entry)];
    if (change.added.length > 0 || change.removed.length > 0) {
      events.push({
        channel: conversationChannel(conversation.id),
        event: {
          type: 'roster',
          conversationId: conversation.id,
          seq,
          epoch: newEpoch,
          added: result.addedDeviceIds,
          removed: result.removedDeviceIds,
        },
      });
    }
    events.push(...(await applyRosterChange(manager, conversation, seq, change, users)));
    // A device removed from the conversation is dropped from its calls at once.
    events.push(
      ...(await dropFromConversationCalls(
        manager,
        conversation.id,
        change.removed.map((seat) => seat.deviceId),
      )),
    );
    if (input.welcome != null && adds.length > 0) {
      const welcome = manager.create(WelcomeEntity, {
        conversationId: conversation.id,
        commitSeq: seq,
        epoch: newEpoch,
        data: input.welcome,
      });
      await manager.save(welcome);
      await manager.insert(
        WelcomeRecipientEntity,
        adds.map((add) => ({
          welcomeId: welcome.id,
          deviceId: add.deviceId,
          keyPackageRef: add.ref,
        })),
      );
      for (const add of adds) {
        events.push({
          channel: deviceChannel(add.deviceId),
          event: {
            type: 'welcome',
            deviceId: add.deviceId,
            welcomeId: welcome.id,
            conversationId: conversation.id,
            epoch: newEpoch,
            commitSeq: seq,
            createdAt: welcome.createdAt,
          },
        });
      }
    }
    return { result, events };
  }

  /**
   * A commit for an epoch the conversation has left: the answer it got if this very bundle, from
   * this device, won that epoch (a retry whose response was lost); STALE_EPOCH otherwise.
   */
  private async replayedResult(
    manager: EntityManager,
    conversation: ConversationState,
    epoch: bigint,
    deviceId: string,
    digest: Buffer,
  ): Promise<CommitResultModel> {
    const won = await manager.findOneBy(CommitResultEntity, {
      conversationId: conversation.id,
      epoch: epoch.toString(),
    });
    if (won === null || won.senderDeviceId !== deviceId || !won.bundleDigest.equals(digest)) {
      throw staleEpoch(conversation.epoch);
    }
    return {
      conversationId: conversation.id,
      seq: won.seq,
      epoch: (epoch + 1n).toString(),
      addedDeviceIds: won.addedDeviceIds,
      removedDeviceIds: won.removedDeviceIds,
    };
  }

  /** The stored GroupInfo of the conversation's current epoch; null only before the first commit. */
  private async storedGroupInfo(
    conversation: ConversationEntity,
  ): Promise<GroupInfoMessage | null> {
    if (conversation.groupInfo === null) return null;
    // Verified when it was stored; a failure here is corrupt storage, hence no domain error.
    const stored = await this.storedGroupInfos.decode(conversation.id, conversation.groupInfo);
    if (stored.epoch !== BigInt(conversation.epoch)) {
      throw new Error(`Conversation ${conversation.id} stores a GroupInfo of another epoch`);
    }
    return stored;
  }

  /**
   * Conversations one of the caller's devices may join by external commit (RFC 9420 §12.4.3.2):
   * its user holds a seat there through another device (not one that is leaving), and this device
   * never held one — a device removed, or that left, never rejoins by itself. A conversation
   * without a GroupInfo yet (before its first commit) is not offered: there is nothing to join.
   */
  async joinable(userId: string, deviceId: string): Promise<JoinableConversationModel[]> {
    return this.dataSource.transaction(async (manager) => {
      const device = await this.devices.owned(manager, userId, deviceId);
      const rows: { id: string }[] = await manager.query(
        `${JOINABLE_SQL} ORDER BY c."created_at", c."id"`,
        [device.userId, device.id],
      );
      if (rows.length === 0) return [];
      const conversations = await manager.find(ConversationEntity, {
        where: { id: In(rows.map((row) => row.id)) },
        order: { createdAt: 'ASC', id: 'ASC' },
      });
      return conversations.flatMap((conversation) =>
        conversation.groupInfo === null
          ? []
          : [
              {
                id: conversation.id,
                kind: ConversationKindValue[conversation.kind],
                epoch: conversation.epoch,
                groupInfo: conversation.groupInfo,
              },
            ],
      );
    });
  }

  /**
   * `joinable` events for the devices that may now join by external commit because the commit
   * added a device of their user: those of the added devices' users that hold no seat and never
   * held one (say, a device registered between a key-package claim and the commit).
   */
  private async joinableEvents(
    manager: EntityManager,
    conversation: ConversationState,
    change: RosterChange,
  ): Promise<Publication[]> {
    if (change.added.length === 0) return [];
    const rows: { id: string }[] = await manager.query(
      `SELECT d."id" FROM "devices" d
        WHERE d."user_id" IN (SELECT a."user_id" FROM "devices" a WHERE a."id" = ANY($2::text[]))
          AND NOT EXISTS (SELECT 1 FROM "conversation_members" m
                           WHERE m."conversation_id" = $1 AND m."device_id" = d."id")
          AND NOT EXISTS (SELECT 1 FROM "commit_results" r
                           WHERE r."conversation_id" = $1
                             AND (d."id" = ANY(r."added_device_ids") OR d."id" = ANY(r."removed_device_ids")))`,
      [conversation.id, change.added.map((seat) => seat.deviceId)],
    );
    return rows.map((row) => ({
      channel: deviceChannel(row.id),
      event: {
        type: 'joinable' as const,
        conversationId: conversation.id,
        deviceId: row.id,
        kind: conversation.kind,
      },
    }));
  }

  /**
   * An external commit's sender may join: FORBIDDEN (NOT_A_MEMBER_USER) when its user holds no
   * seat (and is not one of a DM's pair), INVALID_COMMIT when the device holds one already, FORBIDDEN (FORMER_MEMBER) when it
   * held one before.
   */
  private async checkJoinable(
    manager: EntityManager,
    device: DeviceEntity,
    conversationId: string,
  ): Promise<void> {
    const rows: { seat: boolean; former: boolean; user: boolean }[] = await manager.query(
      `SELECT
         EXISTS (SELECT 1 FROM "conversation_members" m
                  WHERE m."conversation_id" = $1 AND m."device_id" = $3) AS "seat",
         EXISTS (SELECT 1 FROM "commit_results" r
                  WHERE r."conversation_id" = $1
                    AND ($3 = ANY(r."added_device_ids") OR $3 = ANY(r."removed_device_ids"))) AS "former",
         (EXISTS (SELECT 1 FROM "conversation_members" m JOIN "devices" d ON d."id" = m."device_id"
                   WHERE m."conversation_id" = $1 AND d."user_id" = $2 AND NOT m."leaving")
          OR EXISTS (SELECT 1 FROM "conversations" c WHERE c."id" = $1 AND c."kind" = 'DIRECT'
                       AND $2::uuid IN (c."direct_user_low", c."direct_user_high"))) AS "user"`,
      [conversationId, device.userId, device.id],
    );
    const row = rows[0];
    if (row?.seat === true) {
      throw invalidCommit(
        'ALREADY_A_MEMBER',
        'This device already holds a leaf; commit as a member',
      );
    }
    if (row?.user !== true) throw notAMemberUser();
    if (row.former) {
      throw new DomainError('FORBIDDEN', 'This device was in the conversation before', {
        reason: 'FORMER_MEMBER',
      });
    }
  }

  /**
   * A page of the conversations of one of the caller's devices, in creation order after the
   * cursor `after`: two queries (the device, then the page with the caller's seats and roles),
   * whatever the page's size. Members and GroupInfos are read by {@link members} and
   * {@link groupInfos} only when the query selects them.
   */
  async list(
    userId: string,
    deviceId: string,
    first: number,
    after: string | null,
  ): Promise<ConversationSummary[]> {
    checkConversationsFirst(first);
    const position = after === null ? null : parseConversationCursor(after);
    return this.dataSource.transaction(async (manager) => {
      const device = await this.devices.owned(manager, userId, deviceId);
      const rows = await conversationPage(manager, device.id, userId, first, position);
      return rows.map((row) => this.summary(row, userId, row.ackedSeq, row.callerRole));
    });
  }

  /** One conversation of one of the caller's devices. */
  async get(
    userId: string,
    deviceId: string,
    conversationId: string,
  ): Promise<ConversationSummary> {
    return this.dataSource.transaction(async (manager) => {
      const { conversation, seat } = await this.membership(
        manager,
        userId,
        deviceId,
        conversationId,
      );
      // The caller's role alone: a group's roles are one row per user.
      const role = await manager.findOne(ConversationRoleEntity, {
        select: { role: true },
        where: { conversationId: conversation.id, userId },
      });
      return this.summary(conversation, userId, seat.ackedSeq, role?.role ?? null);
    });
  }

  /** The newest GroupInfo, for members. */
  async groupInfo(
    userId: string,
    deviceId: string,
    conversationId: string,
  ): Promise<Buffer | null> {
    return this.dataSource.transaction(async (manager) => {
      await this.membership(manager, userId, deviceId, conversationId);
      return (await groupInfosOf(manager, [conversationId])).get(conversationId) ?? null;
    });
  }

  /**
   * The rosters of conversations the caller already got as summaries (so it is a member), in
   * one query; a seat whose device was deleted is not listed.
   */
  async members(conversationIds: string[]): Promise<Map<string, ConversationMemberModel[]>> {
    const rosters = await membersOf(this.dataSource.manager, conversationIds);
    return new Map(
      [...rosters].map(([id, rows]) => [
        id,
        rows.map((row) => ({
          userId: row.userId,
          deviceId: row.deviceId,
          identity: this.devices.identityOf({ id: row.deviceId, userId: row.userId }),
          leafIndex: row.leafIndex,
          leaving: row.leaving,
          role: row.role === 'ADMIN' ? ConversationRoleValue.ADMIN : ConversationRoleValue.MEMBER,
        })),
      ]),
    );
  }

  /** The GroupInfos of conversations the caller already got as summaries, in one query. */
  groupInfos(conversationIds: string[]): Promise<Map<string, Buffer | null>> {
    return groupInfosOf(this.dataSource.manager, conversationIds);
  }

  /** Welcomes waiting for one of the caller's devices, oldest first. */
  async welcomes(userId: string, deviceId: string): Promise<WelcomeModel[]> {
    return this.dataSource.transaction(async (manager) => {
      const device = await this.devices.owned(manager, userId, deviceId);
      const rows = await manager.find(WelcomeRecipientEntity, {
        where: { deviceId: device.id },
        relations: { welcome: true },
        order: { welcomeId: 'ASC' },
      });
      return rows.flatMap(({ welcome, keyPackageRef }) =>
        welcome === undefined
          ? []
          : [
              {
                id: welcome.id,
                conversationId: welcome.conversationId,
                epoch: welcome.epoch,
                commitSeq: welcome.commitSeq,
                welcome: welcome.data,
                keyPackageRef,
                createdAt: welcome.createdAt,
              },
            ],
      );
    });
  }

  /** Drops a Welcome the device has processed; the Welcome itself goes with its last recipient. */
  async acknowledgeWelcome(userId: string, deviceId: string, welcomeId: string): Promise<void> {
    await this.dataSource.transaction(async (manager) => {
      const device = await this.devices.owned(manager, userId, deviceId);
      if (!/^\d{1,18}$/.test(welcomeId)) throw notFound('Welcome');
      await purgeAcknowledgedKeyPackage(manager, welcomeId, device.id);
      const { affected } = await manager.delete(WelcomeRecipientEntity, {
        welcomeId,
        deviceId: device.id,
      });
      if (affected === 0) throw notFound('Welcome');
      await manager.query(
        `DELETE FROM "welcomes" w WHERE w."id" = $1
           AND NOT EXISTS (SELECT 1 FROM "welcome_recipients" r WHERE r."welcome_id" = w."id")`,
        [welcomeId],
      );
    });
  }

  /**
   * The device leaves: from now on it may not read or post, and every member is told (a `leave`
   * event) so that the next commit removes its leaf — MLS lets no member commit its own removal.
   */
  async leave(userId: string, deviceId: string, conversationId: string): Promise<void> {
    const consequences = await this.dataSource.transaction(async (manager) => {
      const { seat } = await this.membership(manager, userId, deviceId, conversationId);
      // Locked: a promotion and a concurrent role change or commit see one another.
      const conversation = await this.lockedConversation(manager, conversationId);
      await manager.update(
        ConversationMemberEntity,
        { conversationId, deviceId: seat.deviceId },
        { leaving: true },
      );
      // The last admin's last device leaving: the longest-standing remaining user takes over.
      const promotions = await promoteIfNoAdmin(manager, conversation);
      // Leaving the conversation ends the device's part in its calls.
      const calls = await dropFromConversationCalls(manager, conversationId, [seat.deviceId]);
      return [...promotions, ...calls];
    });
    await publishCommitted(this.events, this.logger, [
      {
        channel: conversationChannel(conversationId),
        event: { type: 'leave', conversationId, deviceId },
      },
      ...consequences,
    ]);
  }

  /**
   * The conversation and the device's seat, if the caller owns the device and it is on the
   * roster; NOT_FOUND for no such conversation, NOT_A_MEMBER otherwise. The conversation comes
   * without its GroupInfo (up to a commit bundle's size), which no check of membership needs.
   */
  async membership(
    manager: EntityManager,
    userId: string,
    deviceId: string,
    conversationId: string,
  ): Promise<{ conversation: ConversationRow; seat: ConversationMemberEntity }> {
    const device = await this.devices.owned(manager, userId, deviceId);
    const conversation = await conversationRow(manager, conversationId);
    if (conversation === null) throw notFound('Conversation');
    const seat = await manager.findOneBy(ConversationMemberEntity, {
      conversationId,
      deviceId: device.id,
    });
    if (seat === null || seat.leaving) throw notAMember();
    return { conversation, seat };
  }

  /**
   * An admin of a group sets a user's role; FORBIDDEN (ADMIN_REQUIRED) for anyone else,
   * BAD_USER_INPUT on a direct conversation, NOT_FOUND for a user not in it, LAST_ADMIN for a
   * demotion that would leave no admin.
   */
  async setMemberRole(userId: string, input: SetMemberRoleInput): Promise<ConversationSummary> {
    const outcome = await this.dataSource.transaction(async (manager) => {
      await this.membership(manager, userId, input.deviceId, input.conversationId);
      const conversation = await this.lockedConversation(manager, input.conversationId);
      const publication = await setRole(
        manager,
        conversation,
        userId,
        input.userId.toLowerCase(),
        input.role === ConversationRoleValue.ADMIN ? 'ADMIN' : 'MEMBER',
      );
      return {
        view: await this.view(manager, conversation.id, input.deviceId, userId),
        publication,
      };
    });
    if (outcome.publication !== null) {
      await publishCommitted(this.events, this.logger, [outcome.publication]);
    }
    return outcome.view;
  }

  /**
   * What a new conversation starts from: its epoch-0 GroupInfo, checked (the creator alone at
   * leaf 0), or — for clients that cannot export one — just the ciphersuite; the first commit
   * bundle then brings the GroupInfo and is checked against the creator-only roster.
   */
  private async startingPoint(
    input: CreateConversationInput,
  ): Promise<{ ciphersuite: number; creator: RosterLeaf | null }> {
    if (input.groupInfo == null) {
      if (input.ciphersuite == null) {
        throw new DomainError(
          'BAD_USER_INPUT',
          'Give the groupInfo of epoch 0, or the ciphersuite',
        );
      }
      return { ciphersuite: input.ciphersuite, creator: null };
    }
    this.checkSize('groupInfo', input.groupInfo);
    const groupInfo = await this.verifiedGroupInfo(input.groupInfo);
    if (!Buffer.from(groupInfo.groupId).equals(input.groupId)) {
      throw invalidGroupInfo('WRONG_GROUP', 'The GroupInfo is for another group id');
    }
    if (groupInfo.epoch !== 0n) {
      throw invalidGroupInfo('WRONG_EPOCH', 'A new conversation starts at epoch 0');
    }
    if (input.ciphersuite != null && input.ciphersuite !== groupInfo.ciphersuite) {
      throw invalidGroupInfo('WRONG_CIPHERSUITE', 'The ciphersuite is not the GroupInfo’s');
    }
    const [creator, ...others] = groupInfo.leaves;
    if (creator === undefined || others.length > 0) {
      throw invalidGroupInfo(
        'WRONG_ROSTER',
        'A new group holds exactly the creating device, at leaf 0',
      );
    }
    return { ciphersuite: groupInfo.ciphersuite, creator };
  }

  private async conversation(
    manager: EntityManager,
    conversationId: string,
  ): Promise<ConversationEntity> {
    const conversation = isUuid(conversationId)
      ? await manager.findOneBy(ConversationEntity, { id: conversationId })
      : null;
    if (conversation === null) throw notFound('Conversation');
    return conversation;
  }

  /** The conversation's row, locked until the transaction ends, without its GroupInfo. */
  private async lockedConversation(
    manager: EntityManager,
    conversationId: string,
  ): Promise<ConversationState> {
    const conversation = await manager.findOne(ConversationEntity, {
      select: LOCKED_COLUMNS,
      where: { id: conversationId },
      lock: { mode: 'pessimistic_write' },
    });
    if (conversation === null) throw notFound('Conversation');
    return conversation;
  }

  private verifiedGroupInfo(bytes: Buffer): Promise<VerifiedGroupInfo> {
    return mlsCheck(
      () => verifyGroupInfo(bytes, { maxBytes: this.config.limits.commitBundleBytes }),
      (error) => invalidGroupInfo(error.reason, `The GroupInfo is invalid: ${error.message}`),
    );
  }

  /** The devices of the added key packages, which must have been claimed from Parley. */
  private async addedDevices(
    manager: EntityManager,
    commit: InspectedCommit,
  ): Promise<{ deviceId: string; userId: string; ref: Buffer }[]> {
    const adds = commit.proposals.flatMap((proposal) =>
      proposal.type === 'add' ? [proposal] : [],
    );
    if (adds.length === 0) return [];
    const refs = adds.map((add) => Buffer.from(add.keyPackageRef));
    const stored = await manager.find(KeyPackageEntity, {
      select: { ref: true, deviceId: true, claimedAt: true, lastResort: true },
      where: { ref: In(refs) },
    });
    const byRef = new Map(stored.map((row) => [row.ref.toString('hex'), row]));
    const devices = await manager.find(DeviceEntity, {
      select: { id: true, userId: true },
      where: { id: In(stored.map((row) => row.deviceId)) },
    });
    const deviceById = new Map(devices.map((device) => [device.id, device]));
    return adds.map((add) => {
      const row = byRef.get(toHex(add.keyPackageRef));
      if (row === undefined || (row.claimedAt === null && !row.lastResort)) {
        throw invalidCommit(
          'UNCLAIMED_KEY_PACKAGE',
          'An Add names a key package that was not claimed from Parley',
        );
      }
      const device = deviceById.get(row.deviceId);
      if (
        device === undefined ||
        !Buffer.from(this.devices.identityOf(device)).equals(add.identity)
      ) {
        throw invalidCommit('WRONG_IDENTITY', "An Add's identity is not its key package's device");
      }
      return { deviceId: device.id, userId: device.userId, ref: row.ref };
    });
  }

  private signatureKeyMatches(device: DeviceEntity, signatureKey: Uint8Array): boolean {
    return device.signatureKey === null || device.signatureKey.equals(signatureKey);
  }

  private checkSize(field: string, bytes: Buffer): void {
    if (bytes.length > this.config.limits.commitBundleBytes) {
      throw limitExceeded(`${field} size`, this.config.limits.commitBundleBytes);
    }
  }

  /** The summary of a conversation for a device of the caller that holds a seat in it. */
  private async view(
    manager: EntityManager,
    conversationId: string,
    deviceId: string,
    userId: string,
  ): Promise<ConversationSummary> {
    const conversation = await conversationRow(manager, conversationId);
    if (conversation === null) throw notFound('Conversation');
    const [seat] = await manager.query<{ ackedSeq: string; role: 'ADMIN' | 'MEMBER' | null }[]>(
      `SELECT m."acked_seq"::text AS "ackedSeq", r."role"
         FROM "conversation_members" m
         LEFT JOIN "conversation_roles" r
           ON r."conversation_id" = m."conversation_id" AND r."user_id" = $3
        WHERE m."conversation_id" = $1 AND m."device_id" = $2`,
      [conversationId, deviceId, userId],
    );
    return this.summary(conversation, userId, seat?.ackedSeq ?? '0', seat?.role ?? null);
  }

  private summary(
    conversation: ConversationRow,
    userId: string,
    ackedSeq: string,
    role: 'ADMIN' | 'MEMBER' | null,
  ): ConversationSummary {
    return {
      id: conversation.id,
      groupId: conversation.groupId,
      kind: ConversationKindValue[conversation.kind],
      peerUserId: peerOf(conversation, userId),
      role: role === 'ADMIN' ? ConversationRoleValue.ADMIN : ConversationRoleValue.MEMBER,
      ciphersuite: conversation.ciphersuite,
      epoch: conversation.epoch,
      lastSeq: conversation.lastSeq,
      ackedSeq,
      messageTimerSeconds: conversation.messageTimerSeconds,
      createdAt: conversation.createdAt,
      cursor: conversationCursor({ micros: conversation.createdMicros, id: conversation.id }),
    };
  }
}
