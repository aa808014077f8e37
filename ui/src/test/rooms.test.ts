import { screen, waitFor, within } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';

import { renderApp } from './harness';

describe('servers and rooms', () => {
  it("lists the first server's rooms with counts and badges, and joins one", async () => {
    const { backend, user } = await renderApp();
    const list = await screen.findByRole('list', { name: 'Rooms' });
    const rows = within(list).getAllByRole('listitem');
    expect(rows.map((row) => row.querySelector('.name span')?.textContent)).toEqual(['Lounge', 'Standup']);
    expect(within(rows[0] as HTMLElement).getByLabelText('3 people in the room')).toBeInTheDocument();
    expect(within(rows[0] as HTMLElement).getByText('Mod'), 'a room we manage is marked').toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'Join Lounge' }));

    expect(backend.callsOf('join_room'), 'join_room should get the profile and room id').toEqual([
      { profile: 'local', room: 'lounge', switchRooms: false },
    ]);
    expect(await screen.findByRole('heading', { name: 'Lounge', level: 2 })).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'In Lounge' }), 'the joined room is marked in the list').toBeDisabled();
    const people = screen.getByRole('list', { name: /In the room/ });
    expect(within(people).getAllByRole('listitem'), 'us plus three others').toHaveLength(4);
    expect(
      within(screen.getByRole('list', { name: 'Rooms' })).getByLabelText('4 people in the room'),
      'the joined room counts us with the call, not the server list that lags',
    ).toBeInTheDocument();
    await waitFor(() =>
      expect(backend.callsOf('list_rooms'), 'the list is refreshed once connected').toEqual([
        { profile: 'local' },
        { profile: 'local' },
      ]),
    );
  });

  it('switches servers from the sidebar and shows stage badges', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'forum' }));
    expect(await screen.findByRole('heading', { name: 'forum', level: 2 })).toBeInTheDocument();
    const townHall = (await screen.findByText('Town hall')).closest('li') as HTMLElement;
    expect(within(townHall).getByText('Stage')).toBeInTheDocument();
    expect(within(townHall).getByText('Monthly community call')).toBeInTheDocument();
    expect(within(townHall).getByLabelText('5 people in the room')).toBeInTheDocument();
    const small = screen.getByText('Small room').closest('li') as HTMLElement;
    expect(within(small).getByLabelText('2 of 2 people in the room')).toBeInTheDocument();
    expect(backend.callsOf('list_rooms')).toEqual([{ profile: 'local' }, { profile: 'forum' }]);
  });

  it('offers join-by-id for a backend that lists no rooms', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'matrix' }));
    expect(await screen.findByText(/does not list its rooms/)).toBeInTheDocument();
    expect(backend.callsOf('list_rooms'), 'rooms are not asked of a backend that cannot list them').toEqual([{ profile: 'local' }]);
    await user.type(screen.getByLabelText('Room'), '!abc:example.org');
    await user.click(screen.getByRole('button', { name: 'Join' }));
    await waitFor(() =>
      expect(backend.callsOf('join_room')).toEqual([{ profile: 'matrix', room: '!abc:example.org', switchRooms: false }]),
    );
  });

  it('shows why the room list failed', async () => {
    const { backend, user } = await renderApp();
    backend.fail('list_rooms', { code: 'unreachable', message: 'cannot reach https://forum.example.org: refused' });
    await user.click(screen.getByRole('button', { name: 'forum' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('cannot reach https://forum.example.org: refused');
  });
});

describe('removing a server', () => {
  it('asks first, then removes it and shows the next one', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'Remove server local' }));
    const dialog = await screen.findByRole('alertdialog', { name: 'Remove server' });
    await user.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(backend.callsOf('remove_profile'), 'cancel removes nothing').toEqual([]);

    await user.click(screen.getByRole('button', { name: 'Remove server local' }));
    await user.click(within(await screen.findByRole('alertdialog')).getByRole('button', { name: 'Remove' }));
    expect(backend.callsOf('remove_profile')).toEqual([{ name: 'local' }]);
    expect(await screen.findByRole('heading', { name: 'forum', level: 2 })).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'local' })).toBeNull();
  });
});

describe('notices', () => {
  it('shows a followed room going live', async () => {
    const { backend } = await renderApp();
    backend.postNotice({ kind: 'room_went_live', profile: 'forum', roomId: '7', roomName: 'Town hall' });
    expect(await screen.findByRole('alert')).toHaveTextContent('Town hall is live on forum.');
  });
});

describe('start-up', () => {
  it('opens on the server of a call already under way', async () => {
    await renderApp({ joined: { profile: 'forum', room: 'town-hall' } });
    expect(await screen.findByRole('heading', { name: 'Town hall', level: 2 }), 'the call is shown').toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'forum' }), 'its server is selected').toHaveAttribute('aria-current', 'page');
  });
});
