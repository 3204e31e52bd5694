import { useSyncExternalStore } from 'react';
import type { Session } from '../app/session.js';
import { Main } from './Main.js';
import { SignIn } from './SignIn.js';

/** The page: one screen per phase of the session. */
export function App({ session }: { session: Session }) {
  useSyncExternalStore(session.subscribe, session.snapshot);
  const { phase } = session;
  switch (phase.kind) {
    case 'starting':
      return (
        <main className="centered" aria-busy="true">
          <h1>Parley</h1>
          <p role="status">Opening this browser’s encrypted state…</p>
        </main>
      );
    case 'other-tab':
    case 'moved':
      return (
        <main className="centered">
          <h1>Parley</h1>
          <p role="alert">
            {phase.kind === 'other-tab'
              ? 'Parley is open in another tab of this browser. One tab at a time uses this device, so that its encryption state never forks.'
              : 'Parley moved to another tab of this browser. This tab let go of the device.'}
          </p>
          <button type="button" onClick={() => void session.useHere()}>
            Use Parley in this tab
          </button>
        </main>
      );
    case 'signed-out':
      return <SignIn session={session} username={phase.username} notice={phase.notice} />;
    case 'ready':
      return session.client === null ? null : <Main session={session} />;
  }
}
