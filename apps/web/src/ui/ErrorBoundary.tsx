import { Component, type ReactNode } from 'react';

/** A failure while drawing the page shows a sentence and a way on, not a blank page. */
export class ErrorBoundary extends Component<{ children: ReactNode }, { error: Error | null }> {
  override state: { error: Error | null } = { error: null };

  static getDerivedStateFromError(error: unknown): { error: Error } {
    return { error: error instanceof Error ? error : new Error(String(error)) };
  }

  override render(): ReactNode {
    const { error } = this.state;
    if (error === null) return this.props.children;
    return (
      <main className="centered">
        <h1>Parley</h1>
        <p role="alert">
          Something went wrong on this page ({error.message}). Your messages and keys are saved in
          this browser: reload to go on.
        </p>
        <button
          type="button"
          onClick={() => {
            location.reload();
          }}
        >
          Reload
        </button>
      </main>
    );
  }
}
