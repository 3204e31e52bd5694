import type { OutgoingMessage, ParleyError } from '@parley/client';
import { CliError, describeError, EXIT } from '../errors.js';
import { type Command, resolveConversation, UsageError } from '../context.js';
import { formatTimer } from '../duration.js';
import { formatDisappeared, formatMessage, formatOwn, senderName } from '../format.js';
import { titleOf } from './conversations.js';
import { type LineHandle, openScreen, type Screen } from '../screen.js';

/** A line typed in this chat (or left pending by an earlier one), as the outbox reports it. */
interface Typed {
  text: string;
  id: string | null;
  state: 'typed' | 'pending' | 'sent' | 'failed';
  handle: LineHandle | null;
}

// On /quit or Ctrl-D with the server reachable, lines still in flight get this long to go out.
const FLUSH_MS = 3_000;
// "ben is typing…" goes away this long after ben's last typing signal (they come every 3 s).
const TYPING_SHOWN_MS = 5_000;

/** `parley chat <conversation>`: live and interactive; each line typed is sent. */
export const chat: Command = {
  summary: 'chat live: who said what; each line you type is sent (/quit, Ctrl-D, Ctrl-C end)',
  usage: '<conversation>',
  details: [
    'Your lines are stored in the profile (encrypted) before they go out: while the server is',
    'unreachable they show as [pending ] and are sent, in order, once it is back; a line the',
    'server refuses for good shows as [failed  ] with the reason. Lines still pending when the',
    'chat ends go out the next time the profile connects (any command).',
    'Without a terminal (a pipe) each sent line is printed once, as "me:"; with --json, outbox',
    'changes are objects {"outbox": "pending" | "sent" | "failed", …}.',
  ],
  examples: [
    'parley --profile ana chat 3f2a',
    "printf 'hello\\n/quit\\n' | parley --profile ana chat 3f2a",
  ],
  async run({ args, options, client, print, onInterrupt, onBackgroundError }) {
    const [prefix, ...rest] = args;
    if (prefix === undefined || rest.length > 0)
      throw new UsageError('chat takes one conversation: parley chat <conversation>');
    const parley = await client();

    let screen: Screen | null = null;
    // Lines for people go through the screen (above the prompt); with --json, objects.
    const say = (text: string, json: Record<string, unknown>, stream: 'stdout' | 'stderr') => {
      if (options.json) {
        (stream === 'stdout' ? process.stdout : process.stderr).write(`${JSON.stringify(json)}\n`);
      } else if (screen !== null) screen.line(text, stream);
      else (stream === 'stdout' ? process.stdout : process.stderr).write(`${text}\n`);
    };
    const notice = (text: string, json: Record<string, unknown> = {}) => {
      say(`parley: ${text}`, { notice: text, ...json }, 'stderr');
    };
    // Above the prompt like every other line, not across what is being typed.
    onBackgroundError((line, json) => {
      say(line, json, 'stderr');
    });

    // Written by the connection listener: the flush at the end waits only while online.
    const connection = { online: true };
    parley.onConnection((change) => {
      connection.online = change.state === 'online';
      if (change.state === 'offline')
        notice(`offline (${change.error.message}); reconnecting, your lines are kept until then`, {
          connection: 'offline',
        });
      else if (change.reconnected)
        notice(
          `back online; caught up ${change.caughtUp} log ${change.caughtUp === 1 ? 'entry' : 'entries'}`,
          { connection: 'online', caughtUp: change.caughtUp },
        );
    });
    await parley.connect();
    const conversation = resolveConversation(parley, prefix);
    if (conversation.status !== 'active')
      throw new CliError(
        conversation.status === 'removed' ? 'REMOVED' : 'LEFT',
        `This device ${conversation.status === 'removed' ? 'was removed from' : 'left'} conversation ${conversation.id}; its history stays readable (parley history ${conversation.id.slice(0, 8)})`,
        EXIT.failed,
      );

    const members = await conversation.members();
    const names = await parley.usernames([...new Set(members.map((member) => member.userId))]);
    const others = [
      ...new Set(
        members
          .filter((member) => member.userId !== parley.userId)
          .map((member) => names.get(member.userId) ?? member.userId.slice(0, 8)),
      ),
    ];
    const self = parley.userId === null ? null : (names.get(parley.userId) ?? null);

    let finish: (code: number) => void = () => undefined;
    const ended = new Promise<number>((resolve) => {
      finish = resolve;
    });
    let ending = false;
    const end = (code: number) => {
      if (ending) return;
      ending = true;
      finish(code);
    };
    onInterrupt(() => {
      end(EXIT.interrupted);
    });

    // Own lines: shown once, from the outbox (pending → sent / failed), never again from the log.
    const typed = new Map<string, Typed>();
    const awaitingId: Typed[] = [];
    const show = (entry: Typed, message: OutgoingMessage | null, error: ParleyError | null) => {
      const state = message?.state ?? (error === null ? 'sent' : 'failed');
      if (entry.state === state || entry.state === 'sent' || entry.state === 'failed') return;
      entry.state = state;
      if (options.json) {
        print('', {
          outbox: state,
          conversationId: conversation.id,
          id: entry.id,
          text: entry.text,
          seq: message?.seq ?? null,
          error: error?.message ?? message?.error?.message ?? null,
        });
        return;
      }
      if (screen === null) return;
      const text =
        state === 'pending'
          ? formatOwn('pending', entry.text)
          : state === 'sent'
            ? formatOwn(new Date(), entry.text)
            : formatOwn('failed', entry.text);
      // Without a terminal a line cannot be rewritten: only its outcome is printed.
      if (state === 'pending' && !screen.live) return;
      if (entry.handle === null) entry.handle = screen.mutable(text);
      else entry.handle.update(text);
      if (state === 'failed') {
        const reason = error ?? message?.error ?? null;
        notice(
          `not sent: "${entry.text.length > 40 ? `${entry.text.slice(0, 40)}…` : entry.text}" (${reason === null ? 'failed' : describeError(reason, options.stateLabel).message})`,
        );
      }
    };
    parley.onOutbox((message) => {
      if (message.conversationId !== conversation.id) return;
      let entry = typed.get(message.id);
      if (entry === undefined) {
        // The next line handed to send: the outbox keeps their order.
        const index = awaitingId.findIndex((waiting) => waiting.text === message.text);
        const claimed = index === -1 ? undefined : awaitingId.splice(index, 1)[0];
        entry = claimed ?? { text: message.text, id: message.id, state: 'typed', handle: null };
        entry.id = message.id;
        typed.set(message.id, entry);
      }
      show(entry, message, message.error);
    });

    const replayedUpTo = conversation.history().at(-1)?.seq ?? 0;
    screen = openScreen(
      {
        line: (raw) => {
          const text = raw.trim();
          if (text === '' || ending) return;
          if (text === '/quit') {
            end(EXIT.ok);
            return;
          }
          const entry: Typed = { text, id: null, state: 'typed', handle: null };
          awaitingId.push(entry);
          conversation.send(text).then(
            ({ id }) => {
              entry.id ??= id;
              show(entry, null, null);
            },
            (error: unknown) => {
              const failure = error as ParleyError;
              // Closed while pending: it stays stored and goes out on the next connect.
              if (failure.code === 'CLOSED') return;
              const index = awaitingId.indexOf(entry);
              if (index !== -1) awaitingId.splice(index, 1);
              show(entry, null, failure);
            },
          );
        },
        end: () => {
          end(EXIT.ok);
        },
        interrupt: () => {
          end(EXIT.interrupted);
        },
        typing: () => {
          // Throttled by the SDK (one signal per 3 s); a signal that fails is no one's concern.
          if (!ending) conversation.typing().catch(() => undefined);
        },
      },
      options.json,
    );

    // Who is typing (until TYPING_SHOWN_MS after their last signal), in the prompt.
    const typers = new Map<string, NodeJS.Timeout>();
    const showTypers = () => {
      screen?.status(typers.size === 0 ? null : `${[...typers.keys()].join(', ')} typing…`);
    };
    parley.onTyping((signal) => {
      if (signal.conversationId !== conversation.id || signal.userId === parley.userId) return;
      void parley.usernames([signal.userId]).then((known) => {
        const name = known.get(signal.userId) ?? signal.userId.slice(0, 8);
        clearTimeout(typers.get(name));
        const timer = setTimeout(() => {
          typers.delete(name);
          showTypers();
        }, TYPING_SHOWN_MS);
        timer.unref();
        typers.set(name, timer);
        showTypers();
      });
    });
    // Lines on screen by seq: the timer removes them from the history, the screen says so.
    const shown = new Map<number, { who: string; sentAt: Date }>();
    parley.onExpired((event) => {
      if (event.conversationId !== conversation.id) return;
      for (const seq of event.seqs) {
        const line = shown.get(seq);
        if (line === undefined) continue;
        shown.delete(seq);
        say(
          formatDisappeared(line.who, line.sentAt),
          { disappeared: seq, conversationId: conversation.id, sentAt: line.sentAt.toISOString() },
          'stdout',
        );
      }
      const missed = event.missed.reduce((sum, range) => sum + range.toSeq - range.fromSeq + 1, 0);
      if (missed > 0)
        say(
          `(${missed} message${missed === 1 ? '' : 's'} disappeared before this device could read ${missed === 1 ? 'it' : 'them'})`,
          { missed: event.missed, conversationId: conversation.id },
          'stdout',
        );
    });
    // Read marks: "✓ read by ben" once ben's device read past own lines not yet marked for ben.
    const ownSeqs: number[] = conversation
      .history()
      .filter((message) => message.own)
      .map((message) => message.seq);
    parley.onOutbox((message) => {
      if (message.conversationId === conversation.id && message.seq !== null) {
        ownSeqs.push(message.seq);
        shown.set(message.seq, { who: 'me', sentAt: message.createdAt });
      }
    });
    const markedFor = new Map<string, number>();
    parley.onReceipt((receipt) => {
      // On a terminal only: a pipe's transcript stays what was said, whoever reads it when.
      if (screen?.live !== true) return;
      if (receipt.conversationId !== conversation.id || receipt.userId === parley.userId) return;
      const read = ownSeqs.filter((seq) => seq <= receipt.seq);
      const newest = read.length === 0 ? 0 : Math.max(...read);
      if (newest <= (markedFor.get(receipt.userId) ?? 0)) return;
      markedFor.set(receipt.userId, newest);
      void parley.usernames([receipt.userId]).then((known) => {
        const name = known.get(receipt.userId) ?? receipt.userId.slice(0, 8);
        say(`  ✓ read by ${name}`, { read: conversation.id, by: name, seq: newest }, 'stdout');
      });
    });

    const quit = options.json
      ? ''
      : ' — type and press Enter to send; /quit, Ctrl-D or Ctrl-C ends';
    const title = await titleOf(parley, conversation);
    const heading =
      conversation.kind === 'DIRECT'
        ? `direct chat with ${title}`
        : `chat "${conversation.metadata.name ?? conversation.id.slice(0, 8)}" with ${others.length === 0 ? 'nobody else yet' : others.join(', ')}`;
    const timerSeconds = conversation.messageTimerSeconds;
    const disappearing =
      timerSeconds === 0 ? '' : ` — messages disappear after ${formatTimer(timerSeconds)}`;
    say(
      `${heading}${self === null ? '' : ` (you are ${self})`}${disappearing}${quit}`,
      {
        chat: conversation.id,
        messageTimerSeconds: timerSeconds,
        kind: conversation.kind,
        name: conversation.metadata.name,
        title,
        members: others,
        you: self,
      },
      'stderr',
    );
    // A rename while chatting shows as it happens.
    parley.onMetadata((changed) => {
      if (changed.id !== conversation.id) return;
      notice(`the conversation is now called "${changed.metadata.name ?? '(no name)'}"`, {
        conversationId: changed.id,
        name: changed.metadata.name,
      });
    });

    // Lines left pending (or failed) by an earlier run: shown as such, sent now that it is live.
    for (const message of conversation.outbox()) {
      const entry: Typed = { text: message.text, id: message.id, state: 'typed', handle: null };
      typed.set(message.id, entry);
      show(entry, message, message.error);
    }

    const showMessages = async () => {
      for await (const message of conversation.messages({ from: 'start' })) {
        if (ending) return;
        // Own lines come from the outbox; an own timer change has none.
        if (message.own && message.type !== 'timer' && message.seq > replayedUpTo) continue;
        const senders = await parley.usernames(
          message.senderUserId === null ? [] : [message.senderUserId],
        );
        if (message.expiresAt !== null)
          shown.set(message.seq, { who: senderName(message, senders), sentAt: message.sentAt });
        say(
          formatMessage(message, senders),
          { ...message, sentAt: message.sentAt.toISOString() },
          'stdout',
        );
        // Shown is read: `parley conversations` counts what no chat showed yet.
        await conversation.markRead();
      }
      if (!ending && conversation.status !== 'active') {
        notice(
          `this device ${conversation.status === 'removed' ? 'was removed from' : 'left'} the conversation; the chat ends`,
          { status: conversation.status },
        );
        end(EXIT.failed);
      }
    };
    showMessages().catch((error: unknown) => {
      if (ending) return;
      notice(describeError(error, options.stateLabel).message);
      end(EXIT.failed);
    });

    const code = await ended;
    if (code === EXIT.ok && connection.online) {
      // A clean end with the server there: let lines in flight land (bounded).
      const deadline = Date.now() + FLUSH_MS;
      while (
        Date.now() < deadline &&
        [...typed.values(), ...awaitingId].some(
          (entry) => entry.state === 'typed' || entry.state === 'pending',
        )
      )
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
    screen.close();
    screen = null;
    const waiting = conversation.outbox().filter((message) => message.state === 'pending').length;
    if (waiting > 0)
      notice(
        `${waiting} message${waiting === 1 ? '' : 's'} still pending: stored in ${options.stateLabel}, sent the next time it connects`,
        { pending: waiting },
      );
    return code;
  },
};
