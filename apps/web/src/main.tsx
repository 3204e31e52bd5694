import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { Session } from './app/session.js';
import { App } from './ui/App.js';
import { ErrorBoundary } from './ui/ErrorBoundary.js';
import './styles.css';

const session = new Session();
const root = document.getElementById('root');
if (root === null) throw new Error('index.html has no #root');
createRoot(root).render(
  <StrictMode>
    <ErrorBoundary>
      <App session={session} />
    </ErrorBoundary>
  </StrictMode>,
);
void session.start();
