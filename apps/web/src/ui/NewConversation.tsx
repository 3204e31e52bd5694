import { type SyntheticEvent, useEffect, useRef, useState } from 'react';
import { describeError, type Session } from '../app/session.js';

/** Starts a direct conversation with one person, or a named group with several. */
export function NewConversation({
  session,
  onDone,
}: {
  session: Session;
  onDone: (conversationId: string | null) => void;
}) {
  const [kind, setKind] = useState<'direct' | 'group'>('direct');
  const [people, setPeople] = useState('');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    heading.current?.focus();
  }, []);

  const submit = async (event: SyntheticEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const client = session.clientOrThrow();
      const ids = await session.findUsers(people);
      let id: string;
      if (kind === 'direct') {
        const [peer] = ids;
        if (peer === undefined || ids.length !== 1)
          throw new Error('A direct message is with exactly one person.');
        id = (await client.startDirectConversation(peer)).id;
      } else {
        const conversation = await client.createConversation(ids);
        if (name.trim() !== '') await conversation.setMetadata({ name: name.trim() });
        id = conversation.id;
      }
      session.changed();
      onDone(id);
    } catch (caught) {
      setError(describeError(caught));
      setBusy(false);
    }
  };

  return (
    <form className="panel" onSubmit={(event) => void submit(event)}>
      <button
        type="button"
        className="secondary back"
        onClick={() => {
          onDone(null);
        }}
      >
        <span aria-hidden="true">←</span> Conversations
      </button>
      <h2 tabIndex={-1} ref={heading}>
        New conversation
      </h2>
      <fieldset>
        <legend>Kind</legend>
        <label>
          <input
            type="radio"
            name="kind"
            checked={kind === 'direct'}
            onChange={() => {
              setKind('direct');
            }}
          />{' '}
          Direct message (one person)
        </label>
        <label>
          <input
            type="radio"
            name="kind"
            checked={kind === 'group'}
            onChange={() => {
              setKind('group');
            }}
          />{' '}
          Group
        </label>
      </fieldset>
      {kind === 'group' && (
        <>
          <label htmlFor="group-name">Group name</label>
          <input
            id="group-name"
            maxLength={100}
            value={name}
            onChange={(event) => {
              setName(event.target.value);
            }}
          />
        </>
      )}
      <label htmlFor="people">
        {kind === 'direct' ? 'Username' : 'Usernames (separated by commas)'}
      </label>
      <input
        id="people"
        required
        value={people}
        onChange={(event) => {
          setPeople(event.target.value);
        }}
      />
      {error !== null && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" disabled={busy}>
        {kind === 'direct' ? 'Start direct message' : 'Create group'}
      </button>
      {busy && <p role="status">Setting up encryption with every device…</p>}
    </form>
  );
}
