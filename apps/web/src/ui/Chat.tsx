import type { Conversation, OutgoingMessage, ReceivedMessage } from '@parley/client';
import { type SyntheticEvent, type KeyboardEvent, useEffect, useRef, useState } from 'react';
import type { Session } from '../app/session.js';
import { CallButtons } from './Call.js';
import { Members } from './Members.js';

type Line =
  | { kind: 'day'; key: string; label: string }
  | { kind: 'message'; key: string; message: ReceivedMessage }
  | { kind: 'outgoing'; key: string; message: OutgoingMessage };

const TIME = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const TIME_SECONDS = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
const DAY = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });

function dayLabel(date: Date): string {
  const today = new Date();
  const yesterday = new Date(today.getTime() - 86_400_000);
  if (date.toDateString() === today.toDateString()) return 'Today';
  if (date.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return DAY.format(date);
}

/** The timeline: received messages and own ones still in the outbox, with day separators. */
function timeline(session: Session, conversation: Conversation): Line[] {
  const history = conversation.history().filter((m) => m.type === 'text' || m.type === 'timer');
  const inHistory = new Set(history.filter((m) => m.own).map((m) => m.id));
  const outgoing = [
    ...(session.outgoing.get(conversation.id)?.values() ?? []),
    ...conversation.outbox(),
  ].filter(
    (m, index, all) =>
      !inHistory.has(m.id) &&
      // Sent and already read back from the log: in history, or expired by a timer.
      !(m.state === 'sent' && (m.seq ?? 0) <= conversation.processedSeq) &&
      all.findIndex((o) => o.id === m.id) === index,
  );
  const items: { at: Date; line: Line }[] = [
    ...history.map((message) => ({
      at: message.sentAt,
      line: { kind: 'message' as const, key: `m${message.seq}`, message },
    })),
    ...outgoing.map((message) => ({
      at: message.createdAt,
      line: { kind: 'outgoing' as const, key: `o${message.id}`, message },
    })),
  ];
  const lines: Line[] = [];
  let day = '';
  for (const { at, line } of items) {
    if (at.toDateString() !== day) {
      day = at.toDateString();
      lines.push({ kind: 'day', key: `d${day}`, label: dayLabel(at) });
    }
    lines.push(line);
  }
  return lines;
}

/** One conversation: its messages, who is typing, who read what, and the composer. */
export function Chat({
  session,
  conversation,
  onBack,
}: {
  session: Session;
  conversation: Conversation;
  onBack: () => void;
}) {
  const [draft, setDraft] = useState('');
  const [showMembers, setShowMembers] = useState(false);
  const [renaming, setRenaming] = useState(false);
  const end = useRef<HTMLLIElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const lines = timeline(session, conversation);
  const count = lines.length;
  const active = conversation.status === 'active';
  const typing = session.typingIn(conversation.id);
  const title = session.titleOf(conversation);

  useEffect(() => {
    heading.current?.focus();
  }, []);
  useEffect(() => {
    end.current?.scrollIntoView({ block: 'end' });
    // Shown is read: the unread count goes to 0 and the others get a receipt.
    if (active && conversation.unreadCount > 0 && document.visibilityState === 'visible') {
      void session.attempt(() => session.markRead(conversation));
    }
  }, [count, active, conversation, session]);

  const newestOwn = [...conversation.history()].reverse().find((m) => m.own && m.type === 'text');
  const readers =
    newestOwn === undefined
      ? []
      : [...(session.receipts.get(conversation.id) ?? new Map<string, number>())]
          .filter(([, seq]) => seq >= newestOwn.seq)
          .map(([userId]) => session.nameOf(userId));

  const send = (event?: SyntheticEvent) => {
    event?.preventDefault();
    const text = draft.trim();
    if (text === '') return;
    setDraft('');
    // The outbox reports pending → sent (or failed, with Retry) on its own.
    conversation.send(text).catch(() => undefined);
    session.changed();
  };
  const onKey = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Enter' && !event.shiftKey) send(event);
  };

  return (
    <div className="chat">
      <header className="chat-header">
        <button type="button" className="secondary back" onClick={onBack}>
          <span aria-hidden="true">←</span> Conversations
        </button>
        <h2 tabIndex={-1} ref={heading}>
          {title}
        </h2>
        {conversation.messageTimerSeconds > 0 && (
          <span className="timer-badge">
            Disappearing messages: {formatSeconds(conversation.messageTimerSeconds)}
          </span>
        )}
        <span className="meta">
          {conversation.kind === 'DIRECT'
            ? 'Direct message'
            : `Group · you are ${conversation.role.toLowerCase()}`}
        </span>
        <div className="chat-actions">
          <CallButtons session={session} conversation={conversation} />
          {active && conversation.kind === 'GROUP' && (
            <button
              type="button"
              className="secondary"
              aria-expanded={renaming}
              onClick={() => {
                setRenaming(!renaming);
              }}
            >
              Rename
            </button>
          )}
          {active && <TimerSelect session={session} conversation={conversation} />}
          <button
            type="button"
            className="secondary"
            aria-expanded={showMembers}
            onClick={() => {
              setShowMembers(!showMembers);
            }}
          >
            Members
          </button>
        </div>
      </header>
      {renaming && (
        <RenameForm
          session={session}
          conversation={conversation}
          onDone={() => {
            setRenaming(false);
          }}
        />
      )}
      {showMembers && <Members session={session} conversation={conversation} />}
      {!active && (
        <p className="notice" role="alert">
          {conversation.status === 'removed'
            ? 'You were removed from this conversation. Its history stays readable here.'
            : 'You left this conversation.'}
        </p>
      )}
      <div
        className="timeline"
        role="log"
        aria-label={`Messages in ${title}`}
        // Focusable, so that the keyboard can scroll it.
        tabIndex={0}
      >
        <ol className="messages">
          {lines.map((line) => {
            switch (line.kind) {
              case 'day':
                return (
                  <li key={line.key} className="day">
                    {line.label}
                  </li>
                );
              case 'message':
                return <MessageLine key={line.key} session={session} message={line.message} />;
              case 'outgoing':
                return (
                  <OutgoingLine
                    key={line.key}
                    session={session}
                    conversation={conversation}
                    message={line.message}
                  />
                );
            }
          })}
          <li ref={end} className="end" aria-hidden="true" />
        </ol>
      </div>
      <div className="below" aria-live="polite">
        {typing.length > 0 && (
          <span className="typing">
            {typing.join(', ')} {typing.length === 1 ? 'is' : 'are'} typing…
          </span>
        )}
        {readers.length > 0 && <span className="read">✓ Read by {readers.join(', ')}</span>}
      </div>
      {active && (
        <form className="composer" onSubmit={send}>
          <label htmlFor="composer" className="visually-hidden">
            Message
          </label>
          <textarea
            id="composer"
            rows={2}
            placeholder="Write a message (Enter sends, Shift+Enter a new line)"
            value={draft}
            onChange={(event) => {
              setDraft(event.target.value);
              if (event.target.value !== '') {
                conversation.typing().catch(() => undefined);
              }
            }}
            onKeyDown={onKey}
          />
          <button type="submit">Send</button>
        </form>
      )}
    </div>
  );
}

function MessageLine({ session, message }: { session: Session; message: ReceivedMessage }) {
  if (message.type === 'timer') {
    const seconds = message.timerSeconds ?? 0;
    return (
      <li className="system">
        {message.own ? 'You' : session.nameOf(message.senderUserId)}{' '}
        {seconds === 0
          ? 'turned disappearing messages off'
          : `set messages to disappear after ${formatSeconds(seconds)}`}
      </li>
    );
  }
  return (
    <li className={`message ${message.own ? 'own' : ''}`} data-seq={message.seq}>
      <span className="sender">{message.own ? 'You' : session.nameOf(message.senderUserId)}</span>
      <span className="text">{message.text}</span>
      <span className="time">
        <time dateTime={message.sentAt.toISOString()}>{TIME.format(message.sentAt)}</time>
        {message.own && <span className="state"> · Sent</span>}
        {message.expiresAt !== null && (
          <span className="state"> · disappears at {TIME_SECONDS.format(message.expiresAt)}</span>
        )}
      </span>
    </li>
  );
}

function OutgoingLine({
  session,
  conversation,
  message,
}: {
  session: Session;
  conversation: Conversation;
  message: OutgoingMessage;
}) {
  return (
    <li className={`message own ${message.state}`} data-state={message.state}>
      <span className="sender">You</span>
      <span className="text">{message.text}</span>
      <span className="time">
        {message.state === 'pending' && 'Sending…'}
        {message.state === 'sent' && 'Sent'}
        {message.state === 'failed' && (
          <>
            <span role="alert">Not sent: {message.error?.message ?? 'refused'}</span>{' '}
            <button
              type="button"
              className="link"
              onClick={() => {
                // The line itself shows how the retry ends (sent, or failed again with why).
                conversation.retry(message.id).catch(() => undefined);
                session.changed();
              }}
            >
              Retry
            </button>{' '}
            <button
              type="button"
              className="link"
              onClick={() =>
                void session.attempt(async () => {
                  await conversation.discard(message.id);
                  session.outgoing.get(conversation.id)?.delete(message.id);
                })
              }
            >
              Discard
            </button>
          </>
        )}
      </span>
    </li>
  );
}

function RenameForm({
  session,
  conversation,
  onDone,
}: {
  session: Session;
  conversation: Conversation;
  onDone: () => void;
}) {
  const [name, setName] = useState(conversation.metadata.name ?? '');
  const submit = (event: SyntheticEvent) => {
    event.preventDefault();
    void session
      .attempt(() => conversation.setMetadata({ name: name.trim() === '' ? null : name.trim() }))
      .then((done) => {
        if (done) onDone();
      });
  };
  return (
    <form className="inline-form" onSubmit={submit}>
      <label htmlFor="rename">Group name</label>
      <input
        id="rename"
        autoFocus
        maxLength={100}
        value={name}
        onChange={(event) => {
          setName(event.target.value);
        }}
      />
      <button type="submit">Save name</button>
    </form>
  );
}

const TIMER_CHOICES = [0, 5, 30, 300, 3_600, 86_400];

/** The disappearing-message timer: any member sets it, for everyone, from the next message on. */
function TimerSelect({ session, conversation }: { session: Session; conversation: Conversation }) {
  const current = conversation.messageTimerSeconds;
  const choices = TIMER_CHOICES.includes(current) ? TIMER_CHOICES : [...TIMER_CHOICES, current];
  const id = `timer-${conversation.id}`;
  return (
    <span className="timer-select">
      <label htmlFor={id}>Disappearing</label>
      <select
        id={id}
        value={current}
        onChange={(event) => {
          const seconds = Number(event.target.value);
          void session.attempt(() => conversation.setMessageTimer(seconds));
        }}
      >
        {choices.map((seconds) => (
          <option key={seconds} value={seconds}>
            {seconds === 0 ? 'Off' : formatSeconds(seconds)}
          </option>
        ))}
      </select>
    </span>
  );
}

/** 5 s, 30 s, 5 min, 1 h, 1 d … */
function formatSeconds(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400} d`;
  if (seconds % 3_600 === 0) return `${seconds / 3_600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}
