import type { Conversation, ConversationRole } from '@parley/client';
import { type SyntheticEvent, useCallback, useEffect, useState } from 'react';
import type { Session } from '../app/session.js';

interface Row {
  userId: string;
  devices: number;
  role: ConversationRole;
}

/** The members of a conversation, with what admins may do: invite, remove, change roles. */
export function Members({
  session,
  conversation,
}: {
  session: Session;
  conversation: Conversation;
}) {
  const [rows, setRows] = useState<Row[] | null>(null);
  const [invite, setInvite] = useState('');
  const [busy, setBusy] = useState(false);
  const me = session.client?.userId ?? null;
  const admin = conversation.role === 'ADMIN' && conversation.kind === 'GROUP';
  const active = conversation.status === 'active';

  const load = useCallback(async () => {
    const roster = await conversation.roster();
    const byUser = new Map<string, Row>();
    for (const seat of roster) {
      const row = byUser.get(seat.userId) ?? { userId: seat.userId, devices: 0, role: seat.role };
      row.devices++;
      byUser.set(seat.userId, row);
    }
    await session.learnNames([...byUser.keys()]);
    setRows([...byUser.values()]);
  }, [conversation, session]);

  useEffect(() => {
    if (active) void session.attempt(load);
  }, [active, load, session]);

  const run = (work: () => Promise<unknown>) => {
    setBusy(true);
    void session
      .attempt(async () => {
        await work();
        await load();
      })
      .finally(() => {
        setBusy(false);
      });
  };
  const submitInvite = (event: SyntheticEvent) => {
    event.preventDefault();
    run(async () => {
      const ids = await session.findUsers(invite);
      await conversation.addUsers(ids);
      setInvite('');
    });
  };

  return (
    <section className="members card" aria-label="Members">
      <h3>Members</h3>
      {!active ? (
        <p>You are no longer in this conversation.</p>
      ) : rows === null ? (
        <p role="status">Loading members…</p>
      ) : (
        <ul>
          {rows.map((row) => (
            <li key={row.userId}>
              <span className="member-name">
                {session.nameOf(row.userId)}
                {row.userId === me && ' (you)'}
              </span>
              <span className="role">{row.role === 'ADMIN' ? 'Admin' : 'Member'}</span>
              <span className="devices">
                {row.devices} device{row.devices === 1 ? '' : 's'}
              </span>
              {admin && row.userId !== me && (
                <span className="member-actions">
                  <button
                    type="button"
                    className="link"
                    disabled={busy}
                    onClick={() => {
                      run(() =>
                        conversation.setRole(row.userId, row.role === 'ADMIN' ? 'MEMBER' : 'ADMIN'),
                      );
                    }}
                  >
                    {row.role === 'ADMIN' ? 'Make member' : 'Make admin'}
                    <span className="visually-hidden"> {session.nameOf(row.userId)}</span>
                  </button>
                  <button
                    type="button"
                    className="link danger"
                    disabled={busy}
                    onClick={() => {
                      run(() => conversation.removeUsers([row.userId]));
                    }}
                  >
                    Remove<span className="visually-hidden"> {session.nameOf(row.userId)}</span>
                  </button>
                </span>
              )}
            </li>
          ))}
        </ul>
      )}
      {active && admin && (
        <form className="inline-form" onSubmit={submitInvite}>
          <label htmlFor="invite">Add people (usernames)</label>
          <input
            id="invite"
            value={invite}
            required
            onChange={(event) => {
              setInvite(event.target.value);
            }}
          />
          <button type="submit" disabled={busy}>
            Add
          </button>
        </form>
      )}
      {active && conversation.kind === 'GROUP' && (
        <button
          type="button"
          className="secondary danger"
          disabled={busy}
          onClick={() => {
            run(() => conversation.leave());
          }}
        >
          Leave conversation
        </button>
      )}
      {busy && <p role="status">Working… (each change is an MLS commit)</p>}
    </section>
  );
}
