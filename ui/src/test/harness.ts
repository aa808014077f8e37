// Renders the whole app against an in-memory backend and waits until it has started.

import { render, screen, waitFor } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { expect } from 'vitest';

import App from '../App.svelte';
import { MemoryBackend, type MemoryBackendOptions } from '../lib/backend/memory';

export async function renderApp(options: MemoryBackendOptions = {}) {
  const backend = new MemoryBackend(options);
  const user = userEvent.setup();
  const result = render(App, { props: { backend } });
  await waitFor(() => expect(screen.queryByText('Starting…'), 'the app should finish starting').toBeNull());
  return { backend, user, ...result };
}

/// Renders the app and joins `room` of `profile` (the demo data's by default) through the UI.
export async function renderInRoom(room = 'Lounge', options: MemoryBackendOptions = {}, profile?: string) {
  const rendered = await renderApp(options);
  if (profile) await rendered.user.click(screen.getByRole('button', { name: profile }));
  await rendered.user.click(await screen.findByRole('button', { name: `Join ${room}` }));
  await screen.findByRole('heading', { name: room, level: 2 });
  return rendered;
}
