/**
 * Joining by external commit (RFC 9420 §12.4.3.2): a device of a user joins every conversation
 * where its user already has a device, from the GroupInfo the server keeps, without another
 * device of the user online. The server lists what the device may join (joinableConversations)
 * and orders the external commit in its epoch like any commit: a loser gets STALE_EPOCH and
 * tries again from the fresh GroupInfo.
 */
import { fromBase64, toBase64 } from '@parley/protocol';
import type { CommitBundle, MlsEngine } from '../engine/mls-engine.js';
import { NetworkError, ServiceUnavailableError, StaleEpochError } from '../errors.js';
import { JoinableConversationsDocument, SubmitCommitBundleDocument } from '../graphql/generated.js';
import type { GraphqlTransport } from '../transport/graphql-transport.js';
import type { Conversation } from './conversation.js';

/** External joins of one conversation tried at most (each loss means another commit won). */
export const EXTERNAL_JOIN_ATTEMPTS = 8;

/** Times an unanswered external commit is sent again (same bytes), and the first wait. */
const RESENDS = 3;
const RESEND_DELAY_MS = 250;

/** What joinJoinable needs of the client. */
export interface ExternalJoinContext {
  transport: GraphqlTransport;
  engine: MlsEngine;
  deviceId: string;
  /** Whether the client holds the conversation already. */
  has(conversationId: string): boolean;
  /** Takes the joined group in as a conversation read from after `cursor`. */
  adopt(conversationId: string, groupId: Uint8Array, cursor: number): Conversation;
  /** Saves the client's state, tells the onJoined listeners and reads the log. */
  joined(conversation: Conversation): Promise<void>;
  /** A failure of one conversation, reported without stopping the others. */
  report(error: unknown): void;
}

/**
 * Joins every conversation the server says this device may join; resolves with those joined.
 * A conversation that cannot be joined is reported and left for the next sync.
 */
export async function joinJoinable(context: ExternalJoinContext): Promise<Conversation[]> {
  const joined: Conversation[] = [];
  const first = await list(context);
  for (const candidate of first) {
    if (context.has(candidate.id)) continue;
    try {
      const conversation = await joinOne(context, candidate);
      if (conversation !== null) joined.push(conversation);
    } catch (error) {
      context.report(error);
    }
  }
  return joined;
}

interface Joinable {
  id: string;
  groupInfo: string;
}

async function list(context: ExternalJoinContext): Promise<Joinable[]> {
  const { joinableConversations } = await context.transport.request(JoinableConversationsDocument, {
    deviceId: context.deviceId,
  });
  return joinableConversations;
}

async function joinOne(
  context: ExternalJoinContext,
  candidate: Joinable,
): Promise<Conversation | null> {
  let current: Joinable | undefined = candidate;
  for (let attempt = 1; current !== undefined; attempt++) {
    const target: Joinable = current;
    let seq = 0;
    const { groupId, outcome } = await context.engine.joinByExternalCommit(
      fromBase64(target.groupInfo),
      async (bundle: CommitBundle) => {
        const input = {
          deviceId: context.deviceId,
          conversationId: target.id,
          commit: toBase64(bundle.commit),
          groupInfo: toBase64(bundle.groupInfo),
        };
        for (let resend = 0; ; resend++) {
          try {
            const { submitCommitBundle } = await context.transport.request(
              SubmitCommitBundleDocument,
              { input },
            );
            seq = submitCommitBundle.seq;
            return 'accepted';
          } catch (error) {
            if (error instanceof StaleEpochError) return 'rejected';
            // No answer: the server may have stored the commit, and then this device holds a
            // seat it cannot join again. The same bytes again get the verdict (the server answers
            // a replay of the bundle that won its epoch as the first time).
            const unanswered =
              error instanceof NetworkError || error instanceof ServiceUnavailableError;
            if (!unanswered || resend >= RESENDS) throw error;
            await new Promise((resolve) => setTimeout(resolve, RESEND_DELAY_MS * 2 ** resend));
          }
        }
      },
    );
    if (outcome === 'accepted') {
      const conversation = context.adopt(target.id, groupId, seq);
      await context.joined(conversation);
      return conversation;
    }
    if (attempt >= EXTERNAL_JOIN_ATTEMPTS) {
      throw new StaleEpochError(
        'STALE_EPOCH',
        `Joining conversation ${target.id} lost its epoch ${attempt} times`,
      );
    }
    // Another commit won the epoch: join from the GroupInfo it left, if still joinable.
    current = (await list(context)).find((joinable) => joinable.id === target.id);
  }
  return null;
}
