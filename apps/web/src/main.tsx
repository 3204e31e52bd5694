import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { Session } from './app/session.js';
import { App } from './ui/App.js';
import './styles.css';

const session = new Session();
const root = document.getElementById('root');
if (root === null) throw new Error('index.html has no #root');
createRoot(root).render(
  <StrictMode>
    <App session={session} />
  </StrictMode>,
);
void session.start();
