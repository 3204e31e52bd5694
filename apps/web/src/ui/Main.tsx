import type { Conversation } from '@parley/client';
import { useEffect, useRef, useState } from 'react';
import type { Session } from '../app/session.js';
import { CallPanel, RingBanner } from './Call.js';
import { Chat } from './Chat.js';
import { Devices } from './Devices.js';
import { NewConversation } from './NewConversation.js';

/** What the right-hand side (the whole screen on a phone) shows. */
export type Pane =
  { kind: 'none' } | { kind: 'chat'; id: string } | { kind: 'new' } | { kind: 'devices' };

/** The signed-in page: header, conversation list, and the pane beside it. */
export function Main({ session }: { session: Session }) {
  const [pane, setPane] = useState<Pane>({ kind: 'none' });
  const client = session.clientOrThrow();
  const conversations = [...client.conversations()].sort(
    (a, b) => lastActivity(b) - lastActivity(a),
  );
  const open = pane.kind === 'chat' ? conversations.find((c) => c.id === pane.id) : undefined;

  return (
    <div className={`app ${pane.kind === 'none' ? 'show-list' : 'show-pane'}`}>
      <header className="top">
        <h1>Parley</h1>
        <ConnectionBadge session={session} />
        <span className="who">
          Signed in as <strong>{session.username}</strong>
        </span>
        <nav aria-label="Account" className="account">
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setPane({ kind: 'devices' });
            }}
          >
            Devices
          </button>
          <button
            type="button"
            className="secondary"
            onClick={() => void session.attempt(() => session.signOut(false))}
          >
            Sign out
          </button>
          <button
            type="button"
            className="secondary"
            onClick={() => void session.attempt(() => session.signOut(true))}
          >
            Sign out everywhere
          </button>
        </nav>
      </header>
      <Notices session={session} />
      <RingBanner session={session} />
      <CallPanel session={session} />
      <div className="columns">
        <nav className="list" aria-label="Conversations">
          <div className="list-actions">
            <button
              type="button"
              onClick={() => {
                setPane({ kind: 'new' });
              }}
            >
              New conversation
            </button>
          </div>
          {conversations.length === 0 ? (
            <p className="empty">No conversations yet. Start one, or wait to be added.</p>
          ) : (
            <ul>
              {conversations.map((conversation) => (
                <li key={conversation.id}>
                  <ConversationItem
                    session={session}
                    conversation={conversation}
                    selected={conversation.id === open?.id}
                    onOpen={() => {
                      setPane({ kind: 'chat', id: conversation.id });
                    }}
                  />
                </li>
              ))}
            </ul>
          )}
        </nav>
        <section className="pane" aria-label="Conversation">
          {pane.kind === 'chat' && open !== undefined && (
            <Chat
              key={open.id}
              session={session}
              conversation={open}
              onBack={() => {
                setPane({ kind: 'none' });
              }}
            />
          )}
          {pane.kind === 'new' && (
            <NewConversation
              session={session}
              onDone={(id) => {
                setPane(id === null ? { kind: 'none' } : { kind: 'chat', id });
              }}
            />
          )}
          {pane.kind === 'devices' && (
            <Devices
              session={session}
              onBack={() => {
                setPane({ kind: 'none' });
              }}
            />
          )}
          {(pane.kind === 'none' || (pane.kind === 'chat' && open === undefined)) && (
            <p className="empty wide-only">Choose a conversation, or start a new one.</p>
          )}
        </section>
      </div>
    </div>
  );
}

function lastActivity(conversation: Conversation): number {
  return conversation.lastMessage?.sentAt.getTime() ?? 0;
}

function ConversationItem({
  session,
  conversation,
  selected,
  onOpen,
}: {
  session: Session;
  conversation: Conversation;
  selected: boolean;
  onOpen: () => void;
}) {
  const last = conversation.lastMessage;
  const unread = conversation.unreadCount;
  const title = session.titleOf(conversation);
  const preview =
    conversation.status !== 'active'
      ? conversation.status === 'removed'
        ? 'You were removed'
        : 'You left'
      : last === null
        ? conversation.kind === 'DIRECT'
          ? 'Direct message'
          : 'No messages yet'
        : `${last.own ? 'You' : session.nameOf(last.senderUserId)}: ${last.text ?? ''}`;
  return (
    <button
      type="button"
      className={`conversation ${selected ? 'selected' : ''}`}
      aria-current={selected ? 'true' : undefined}
      onClick={onOpen}
    >
      <span className="title">
        {title}
        {conversation.kind === 'DIRECT' && <span className="tag">DM</span>}
      </span>
      <span className="preview">{preview}</span>
      {unread > 0 && (
        <span className="unread" aria-label={`${unread} unread`}>
          {unread}
        </span>
      )}
    </button>
  );
}

/** The live connection, always visible, announced when it changes. */
function ConnectionBadge({ session }: { session: Session }) {
  const { connection } = session;
  const [, tick] = useState(0);
  useEffect(() => {
    if (connection.state !== 'offline') return;
    const timer = setInterval(() => {
      tick((n) => n + 1);
    }, 1000);
    return () => {
      clearInterval(timer);
    };
  }, [connection]);
  // The live region says the state once; the countdown beside it is not announced each second.
  const text =
    connection.state === 'online'
      ? 'Online'
      : connection.state === 'connecting'
        ? 'Connecting…'
        : 'Offline — reconnecting';
  return (
    <span
      className={`connection ${connection.state}`}
      title={connection.state === 'offline' ? connection.reason : undefined}
      data-state={connection.state}
    >
      <span role="status">{text}</span>
      {connection.state === 'offline' && (
        <span aria-hidden="true">
          {' '}
          in {Math.max(0, Math.ceil((connection.retryAt - Date.now()) / 1000))} s
        </span>
      )}
    </span>
  );
}

function Notices({ session }: { session: Session }) {
  const last = useRef<HTMLDivElement>(null);
  if (session.notices.length === 0) return null;
  return (
    <div className="notices" ref={last}>
      {session.notices.map((notice) => (
        <p key={notice.id} className="notice" role="alert">
          {notice.text}
          <button
            type="button"
            className="link"
            onClick={() => {
              session.dismiss(notice.id);
            }}
          >
            Dismiss
          </button>
        </p>
      ))}
    </div>
  );
}
