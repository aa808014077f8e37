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

describe('join links', () => {
  it('asks before joining the room a link names, and joins only on a click', async () => {
    const { backend, user } = await renderApp();
    backend.openJoinLink('forum', 'town-hall');

    const dialog = await screen.findByRole('alertdialog', { name: 'Join this room?' });
    expect(dialog).toHaveTextContent('A link asks to join town-hall on your server forum.');
    expect(dialog).toHaveTextContent('Nothing is sent until you join');
    expect(within(dialog).getByRole('button', { name: 'Not now' }), 'Enter or Space must not join').toHaveFocus();
    expect(backend.callsOf('join_room'), 'a link alone joins nothing').toEqual([]);

    await user.click(within(dialog).getByRole('button', { name: 'Join' }));
    expect(backend.callsOf('join_room')).toEqual([{ profile: 'forum', room: 'town-hall', switchRooms: false }]);
    expect(await screen.findByRole('heading', { name: 'Town hall', level: 2 })).toBeInTheDocument();
    expect(screen.queryByRole('alertdialog')).toBeNull();
  });

  it('declines a link with Not now or Escape', async () => {
    const { backend, user } = await renderApp();
    backend.openJoinLink('local', 'lounge');
    const dialog = await screen.findByRole('alertdialog', { name: 'Join this room?' });
    await user.click(within(dialog).getByRole('button', { name: 'Not now' }));
    await waitFor(() => expect(screen.queryByRole('alertdialog')).toBeNull());

    backend.openJoinLink('local', 'standup');
    await screen.findByRole('alertdialog', { name: 'Join this room?' });
    await user.keyboard('{Escape}');
    await waitFor(() => expect(screen.queryByRole('alertdialog')).toBeNull());
    expect(backend.callsOf('dismiss_link')).toHaveLength(2);
    expect(backend.callsOf('join_room')).toEqual([]);
  });

  it('says so when a link names a server the user has not added', async () => {
    const { backend, user } = await renderApp();
    backend.openJoinLink('work', 'secret-room');
    const dialog = await screen.findByRole('alertdialog', { name: 'Unknown server' });
    expect(dialog).toHaveTextContent('on a server named work, which you have not added');
    expect(within(dialog).queryByRole('button', { name: 'Join' })).toBeNull();
    await user.click(within(dialog).getByRole('button', { name: 'OK' }));
    await waitFor(() => expect(screen.queryByRole('alertdialog')).toBeNull());
    expect(backend.callsOf('join_room')).toEqual([]);
  });
});
