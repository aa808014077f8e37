import { screen, waitFor, within } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';

import { renderApp, renderInRoom } from './harness';

describe('error dialogs', () => {
  it('tells a kicked user what happened and leaves the room view', async () => {
    const { backend, user } = await renderInRoom('Lounge');
    backend.endCall('kicked', 'you were removed from this room by a moderator');

    const dialog = await screen.findByRole('alertdialog', { name: 'You were removed from the room' });
    expect(dialog).toHaveTextContent('A moderator removed you from Lounge.');
    expect(screen.queryByRole('heading', { name: 'Lounge', level: 2 }), 'the call view is gone').toBeNull();
    await user.click(within(dialog).getByRole('button', { name: 'OK' }));
    expect(screen.queryByRole('alertdialog')).toBeNull();
  });

  it('explains a ban when joining', async () => {
    const { backend, user } = await renderApp();
    backend.fail('join_room', { code: 'banned', message: 'you are banned from this room' });
    await user.click(await screen.findByRole('button', { name: 'Join Standup' }));
    const dialog = await screen.findByRole('alertdialog', { name: 'You are banned from this room' });
    expect(dialog).toHaveTextContent('A moderator banned you from Standup.');
  });

  it('explains a full room', async () => {
    const { backend, user } = await renderApp();
    await user.click(screen.getByRole('button', { name: 'forum' }));
    await user.click(await screen.findByRole('button', { name: 'Join Small room' }));
    const dialog = await screen.findByRole('alertdialog', { name: 'The room is full' });
    expect(dialog).toHaveTextContent('Small room has reached its participant limit.');
    expect(backend.callsOf('join_room')).toEqual([{ profile: 'forum', room: 'full', switchRooms: false }]);
    await user.click(within(dialog).getByRole('button', { name: 'OK' }));
    // The failed call is cleared from the state with the dialog.
    await waitFor(() => expect(backend.callsOf('leave_room')).toHaveLength(1));
  });

  it('switches rooms in one click when the backend says the user is in another', async () => {
    const { backend, user } = await renderApp({ elsewhere: { forum: { roomId: '9', roomName: 'Old room' } } });
    await user.click(screen.getByRole('button', { name: 'forum' }));
    await user.click(await screen.findByRole('button', { name: 'Join Town hall' }));

    const dialog = await screen.findByRole('alertdialog', { name: 'You are in another room' });
    expect(dialog).toHaveTextContent('Leave that room and join Town hall?');
    const switchButton = within(dialog).getByRole('button', { name: 'Leave that room and join this one' });
    expect(switchButton, 'the switch is the default action').toHaveFocus();
    await user.click(switchButton);

    expect(backend.callsOf('join_room')).toEqual([
      { profile: 'forum', room: 'town-hall', switchRooms: false },
      { profile: 'forum', room: 'town-hall', switchRooms: true },
    ]);
    expect(await screen.findByRole('heading', { name: 'Town hall', level: 2 })).toBeInTheDocument();
    expect(screen.queryByRole('alertdialog')).toBeNull();
  });

  it('shows the message of any other failure and closes on Escape', async () => {
    const { backend, user } = await renderApp();
    backend.fail('join_room', { code: 'unreachable', message: 'cannot reach ws://127.0.0.1:7880: refused' });
    const join = await screen.findByRole('button', { name: 'Join Lounge' });
    await user.click(join);
    const dialog = await screen.findByRole('alertdialog', { name: 'Could not join' });
    expect(dialog).toHaveTextContent('cannot reach ws://127.0.0.1:7880: refused');
    await user.keyboard('{Escape}');
    expect(screen.queryByRole('alertdialog')).toBeNull();
    expect(join, 'focus returns to the button that opened the dialog').toHaveFocus();
  });
});
