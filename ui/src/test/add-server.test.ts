import { fireEvent, screen, waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';

import { renderApp } from './harness';

describe('add server', () => {
  it('opens on first run and refuses an empty form without calling the backend', async () => {
    const { backend, user } = await renderApp({ profiles: [], rooms: {} });
    expect(screen.getByRole('heading', { name: 'Welcome to Parley' }), 'first run should show the welcome form').toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'Add server' }));

    expect(screen.getByText('Give the server a name.'), 'an empty name should be reported').toBeInTheDocument();
    expect(screen.getByText('Server URL is required.'), 'the required URL should be reported').toBeInTheDocument();
    expect(screen.getByText('API secret is required.'), 'the required secret should be reported').toBeInTheDocument();
    expect(screen.getByLabelText('Name'), 'focus should move to the first invalid field').toHaveFocus();
    expect(screen.getByLabelText('Name')).toHaveAttribute('aria-invalid', 'true');
    expect(backend.callsOf('add_profile'), 'nothing should be sent while the form is invalid').toEqual([]);

    await user.type(screen.getByLabelText('Name'), 'home');
    expect(screen.queryByText('Give the server a name.'), 'fixing a field clears its complaint').toBeNull();
    expect(screen.getByLabelText('Name')).not.toHaveAttribute('aria-invalid');
    expect(screen.getByText('Server URL is required.'), 'the others stay until fixed').toBeInTheDocument();
  });

  it('reaches Settings (devices, shortcuts, updates) before any server is added', async () => {
    const { user } = await renderApp({ profiles: [], rooms: {} });
    await user.click(screen.getByRole('button', { name: 'Settings' }));
    expect(screen.getByRole('dialog', { name: 'Settings' }), 'the first-run screen should open Settings').toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Check for updates' })).toBeInTheDocument();
  });

  it('rejects a bad profile name and a URL with the wrong scheme', async () => {
    const { backend, user } = await renderApp({ profiles: [], rooms: {} });
    await user.type(screen.getByLabelText('Name'), 'my server');
    await user.type(screen.getByLabelText('Server URL'), 'https://livekit.example.org');
    await user.click(screen.getByRole('button', { name: 'Add server' }));

    expect(screen.getByText("Use only letters, digits, '.', '_' or '-'.")).toBeInTheDocument();
    expect(screen.getByText('Server URL must start with ws:// or wss://.'), 'LiveKit signalling needs ws(s)').toBeInTheDocument();
    expect(backend.callsOf('add_profile')).toEqual([]);
  });

  it('sends settings and secrets once, then keeps no copy of the secret', async () => {
    const { backend, user, container } = await renderApp({ profiles: [], rooms: {} });
    await user.type(screen.getByLabelText('Name'), 'home');
    await user.type(screen.getByLabelText('Server URL'), 'ws://127.0.0.1:7880');
    await user.type(screen.getByLabelText('API key'), 'devkey');
    await user.type(screen.getByLabelText('Identity'), 'alice');
    await user.type(screen.getByLabelText('API secret'), 's3cret-value');
    expect(screen.getByLabelText('API secret'), 'secrets are typed into password fields').toHaveAttribute('type', 'password');

    await user.click(screen.getByRole('button', { name: 'Add server' }));

    await waitFor(() => expect(backend.callsOf('add_profile')).toHaveLength(1));
    expect(backend.callsOf('add_profile')[0], 'the backend should get the settings and the secret by keyring name').toEqual({
      profile: {
        name: 'home',
        backend: 'livekit',
        fields: { url: 'ws://127.0.0.1:7880', api_key: 'devkey', identity: 'alice' },
        secrets: { 'api-secret': 's3cret-value' },
        replace: false,
        register: false,
        insecure: false,
      },
    });
    expect(backend.keyring.get('home')).toEqual({ 'api-secret': 's3cret-value' });
    // The app moved on to the new server's rooms.
    expect(await screen.findByRole('heading', { name: 'home', level: 2 })).toBeInTheDocument();

    // Opening the form again shows nothing of the secret, and no input or text holds it.
    await user.click(screen.getByRole('button', { name: 'Add a server' }));
    expect(screen.getByLabelText('API secret')).toHaveValue('');
    const values = Array.from(container.querySelectorAll('input, textarea')).map((el) => (el as HTMLInputElement).value);
    expect(values, 'no field should still hold the secret').not.toContain('s3cret-value');
    expect(document.body.innerHTML, 'the secret should not be rendered anywhere').not.toContain('s3cret-value');
  });

  it('shows the backend error when saving fails and sends each backend its own fields', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'Add a server' }));
    await user.selectOptions(screen.getByLabelText('Server type'), 'nip29');
    expect(screen.queryByLabelText('API key'), 'LiveKit fields should be gone').toBeNull();
    await user.type(screen.getByLabelText('Name'), 'relay');
    await user.type(screen.getByLabelText('Relay URL'), 'wss://relay.example');
    await user.type(screen.getByLabelText('Secret key (hex or nsec1…)'), 'nsec1abc');
    backend.fail('add_profile', { code: 'keyring', message: 'the system keyring failed: locked' });

    await user.click(screen.getByRole('button', { name: 'Add server' }));

    expect(await screen.findByRole('alert')).toHaveTextContent('the system keyring failed: locked');
    expect(backend.callsOf('add_profile')[0]).toEqual({
      profile: {
        name: 'relay',
        backend: 'nip29',
        fields: { relay_url: 'wss://relay.example' },
        secrets: { 'nostr-key': 'nsec1abc' },
        replace: false,
        register: false,
        insecure: false,
      },
    });
  });

  it('creates a disTokoloshe account when asked, and offers it only where the backend has registration', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'Add a server' }));
    expect(screen.queryByLabelText(/Create a new account/), 'LiveKit has no accounts to create').toBeNull();
    await user.selectOptions(screen.getByLabelText('Server type'), 'distokoloshe');
    await user.type(screen.getByLabelText('Name'), 'dk');
    await user.type(screen.getByLabelText('Server URL'), 'https://voice.example.org');
    await user.type(screen.getByLabelText('Username'), 'newcomer');
    await user.type(screen.getByLabelText('Password'), 'Newcomer-pass-42');
    await user.click(screen.getByLabelText(/Create a new account/));
    await user.click(screen.getByRole('button', { name: 'Add server' }));
    await waitFor(() => expect(backend.callsOf('add_profile')).toHaveLength(1));
    expect(backend.callsOf('add_profile')[0]).toEqual({
      profile: {
        name: 'dk',
        backend: 'distokoloshe',
        fields: { url: 'https://voice.example.org', username: 'newcomer' },
        secrets: { password: 'Newcomer-pass-42' },
        replace: false,
        register: true,
        insecure: false,
      },
    });
  });

  it('runs the Discourse key flow through the paste box', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'Add a server' }));
    await user.selectOptions(screen.getByLabelText('Server type'), 'audioroom');
    await user.type(screen.getByLabelText('Name'), 'forum2');
    await user.type(screen.getByLabelText('Forum URL'), 'https://forum.example.org');

    await user.click(screen.getByRole('button', { name: 'Add server' }));
    expect(screen.getByText('Sign in with the forum first.'), 'a forum profile needs its key first').toBeInTheDocument();
    expect(backend.callsOf('add_profile')).toEqual([]);

    await user.click(screen.getByRole('button', { name: 'Sign in with the forum' }));
    expect(backend.callsOf('begin_discourse_auth')).toEqual([{ profile: 'forum2', url: 'https://forum.example.org' }]);

    const paste = await screen.findByLabelText(/paste the text the forum showed/);
    await user.click(paste);
    await user.paste('BASE64PAYLOADFROMTHEFORUM==');
    await user.click(screen.getByRole('button', { name: 'Use pasted key' }));
    expect(backend.callsOf('complete_discourse_auth')).toEqual([{ profile: 'forum2', payload: 'BASE64PAYLOADFROMTHEFORUM==' }]);
    expect(await screen.findByText(/Signed in/)).toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'Add server' }));
    await waitFor(() => expect(backend.callsOf('add_profile')).toHaveLength(1));
    expect(backend.callsOf('add_profile')[0], 'the profile should carry the client id the key is bound to, and no secret').toEqual({
      profile: {
        name: 'forum2',
        backend: 'audioroom',
        fields: { url: 'https://forum.example.org', client_id: 'client-forum2' },
        secrets: {},
        replace: false,
        register: false,
        insecure: false,
      },
    });
  });

  it('completes the Discourse key flow from the deep link event', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'Add a server' }));
    await user.selectOptions(screen.getByLabelText('Server type'), 'audioroom');
    await user.type(screen.getByLabelText('Name'), 'forum3');
    await user.type(screen.getByLabelText('Forum URL'), 'https://forum.example.org');
    await user.click(screen.getByRole('button', { name: 'Sign in with the forum' }));
    await screen.findByRole('button', { name: 'Open the forum again' });

    backend.openDeepLink('parley://auth_redirect?payload=RU5DUllQVEVEUEFZTE9BRA%3D%3D');

    expect(await screen.findByText(/Signed in/)).toBeInTheDocument();
    expect(backend.callsOf('complete_discourse_auth'), 'the payload goes to the backend, URL-decoded').toEqual([
      { profile: 'forum3', payload: 'RU5DUllQVEVEUEFZTE9BRA==' },
    ]);
    expect(backend.keyring.get('forum3'), 'the key is in the keyring').toEqual({ 'user-api-key': 'decrypted-RU5D' });
    expect(screen.queryByLabelText(/paste the text/), 'the paste box is no longer needed').toBeNull();
  });

  it('reports a malformed pasted payload', async () => {
    const { user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'Add a server' }));
    await user.selectOptions(screen.getByLabelText('Server type'), 'audioroom');
    await user.type(screen.getByLabelText('Name'), 'forum4');
    await user.type(screen.getByLabelText('Forum URL'), 'https://forum.example.org');
    await user.click(screen.getByRole('button', { name: 'Sign in with the forum' }));
    await fireEvent.input(await screen.findByLabelText(/paste the text/), { target: { value: 'short' } });
    await user.click(screen.getByRole('button', { name: 'Use pasted key' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('the text is not a key payload from the forum');
  });
});

describe('add server: deep links', () => {
  it('shows why the forum sign-in failed', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'Add a server' }));
    await user.selectOptions(screen.getByLabelText('Server type'), 'audioroom');
    await user.type(screen.getByLabelText('Name'), 'forum5');
    await user.type(screen.getByLabelText('Forum URL'), 'https://forum.example.org');
    await user.click(screen.getByRole('button', { name: 'Sign in with the forum' }));
    await screen.findByRole('button', { name: 'Open the forum again' });
    backend.fail('complete_discourse_auth', { code: 'malformed_response', message: 'the payload was made for another key' });
    backend.openDeepLink('parley://auth_redirect?payload=QU5PVEhFUktFWVNQQVlMT0FE');
    expect(await screen.findByRole('alert')).toHaveTextContent('the payload was made for another key');
    expect(screen.queryByText(/Signed in/)).toBeNull();
  });

  it('ignores deep links while no sign-in is waiting', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'Add a server' }));
    await user.selectOptions(screen.getByLabelText('Server type'), 'audioroom');
    await user.type(screen.getByLabelText('Name'), 'forum6');
    backend.openDeepLink('parley://auth_redirect?payload=QU5PVEhFUktFWVNQQVlMT0FE');
    backend.openDeepLink('parley://invite/xyz');
    await user.click(screen.getByRole('button', { name: 'Add server' }));
    expect(backend.callsOf('complete_discourse_auth'), 'no sign-in was started, so nothing is completed').toEqual([]);
  });
  it('asks before saving an unencrypted server on another machine, and marks it in the sidebar', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'Add a server' }));
    await user.selectOptions(screen.getByLabelText('Server type'), 'distokoloshe');
    await user.type(screen.getByLabelText('Name'), 'lan');
    await user.type(screen.getByLabelText('Server URL'), 'http://127.0.0.1:3000');
    expect(screen.queryByText('Unencrypted connection'), 'loopback needs no consent').toBeNull();
    await user.clear(screen.getByLabelText('Server URL'));
    await user.type(screen.getByLabelText('Server URL'), 'http://voice.lan:3000');
    await user.type(screen.getByLabelText('Username'), 'judy');
    await user.type(screen.getByLabelText('Password'), 'pw-value');
    expect(screen.getByText('Unencrypted connection'), 'the form warns as soon as the address is cleartext').toBeInTheDocument();
    expect(screen.getByText(/can read your password and join tokens/)).toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'Add server' }));
    expect(screen.getByText(/This address is unencrypted/), 'saving needs the consent').toBeInTheDocument();
    expect(screen.getByLabelText('Allow unencrypted connections to this server'), 'focus goes to the consent').toHaveFocus();
    expect(backend.callsOf('add_profile')).toEqual([]);

    await user.click(screen.getByLabelText('Allow unencrypted connections to this server'));
    await user.click(screen.getByRole('button', { name: 'Add server' }));
    await waitFor(() => expect(backend.callsOf('add_profile')).toHaveLength(1));
    expect(backend.callsOf('add_profile')[0], 'the consent travels with the profile').toMatchObject({ profile: { name: 'lan', insecure: true } });
    expect(await screen.findByRole('button', { name: 'lan (unencrypted)' }), 'the sidebar marks the server').toBeInTheDocument();
  });
});
