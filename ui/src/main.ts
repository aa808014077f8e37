// Entry point: the Tauri shell's backend inside the app, the in-memory one in a plain browser
// (`npm run dev` without the shell), so the UI can be worked on without building Rust.

import { mount } from 'svelte';

import './app.css';
import App from './App.svelte';
import type { Backend } from './lib/backend';
import { inTauri, tauriBackend } from './lib/backend/tauri';

// The in-memory backend is loaded only outside the shell, so the app's bundle does not carry
// its demo data.
async function chooseBackend(): Promise<Backend> {
  if (inTauri()) return tauriBackend();
  const { MemoryBackend } = await import('./lib/backend/memory');
  // `?join=local/lounge` starts in that demo call.
  const [profile, room] = new URLSearchParams(window.location.search).get('join')?.split('/') ?? [];
  return new MemoryBackend({ animate: true, joined: profile && room ? { profile, room } : undefined });
}

const target = document.getElementById('app');
// Invariant: index.html has <div id="app">.
if (!target) throw new Error('index.html has no #app element');

void chooseBackend().then((backend) => mount(App, { target, props: { backend } }));
