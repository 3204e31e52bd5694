import { type SyntheticEvent, useState } from 'react';
import { describeError, type Session } from '../app/session.js';

/** Sign in, or create an account; either registers this browser as a device the first time. */
export function SignIn({
  session,
  username: initialUsername,
  notice,
}: {
  session: Session;
  username: string;
  notice: string | null;
}) {
  const [username, setUsername] = useState(initialUsername);
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const submit = (create: boolean) => async (event?: SyntheticEvent) => {
    event?.preventDefault();
    setError(null);
    setBusy(create ? 'Creating your account and this device…' : 'Signing in…');
    try {
      await session.signIn(username, password, create);
    } catch (caught) {
      setError(describeError(caught));
      setBusy(null);
    }
  };

  return (
    <main className="centered">
      <h1>Parley</h1>
      <p className="lede">
        End-to-end encrypted chat. Messages are encrypted in this page (MLS, OpenMLS in
        WebAssembly); the server only ever sees ciphertext.
      </p>
      {notice !== null && (
        <p className="notice" role="alert">
          {notice}
        </p>
      )}
      <form className="card sign-in" onSubmit={(event) => void submit(false)(event)}>
        <label htmlFor="username">Username</label>
        <input
          id="username"
          name="username"
          autoComplete="username"
          required
          autoFocus
          value={username}
          onChange={(event) => {
            setUsername(event.target.value);
          }}
        />
        <label htmlFor="password">Password</label>
        <input
          id="password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          minLength={8}
          value={password}
          onChange={(event) => {
            setPassword(event.target.value);
          }}
        />
        {error !== null && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        {busy !== null && <p role="status">{busy}</p>}
        <div className="actions">
          <button type="submit" disabled={busy !== null}>
            Sign in
          </button>
          <button
            type="button"
            className="secondary"
            disabled={busy !== null}
            onClick={(event) => {
              const form = event.currentTarget.form;
              if (form?.reportValidity() === false) return;
              void submit(true)();
            }}
          >
            Create account
          </button>
        </div>
      </form>
    </main>
  );
}
