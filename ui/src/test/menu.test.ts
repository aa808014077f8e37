import { fireEvent, screen, waitFor, within } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';

import { option, person, room } from '../lib/backend/memory';
import { renderInRoom } from './harness';

function actionNames(menu: HTMLElement): string[] {
  const group = within(menu).queryByRole('group', { name: 'Moderation' });
  return group ? within(group).getAllByRole('button').map((button) => button.textContent?.trim() ?? '') : [];
}

describe('participant menu', () => {
  it('opens on right-click with only the moderation actions allowed for that participant', async () => {
    await renderInRoom('Lounge');
    // The lounge offers mute, kick and ban. Bob is already muted: no "Mute for everyone".
    await fireEvent.contextMenu(screen.getByRole('button', { name: /^Bob Marley/ }), { clientX: 120, clientY: 80 });
    const menu = await screen.findByRole('dialog', { name: 'Bob Marley' });
    expect(actionNames(menu)).toEqual(['Kick…', 'Ban…']);
    expect(within(menu).getByRole('slider'), 'focus starts on the volume slider').toHaveFocus();

    await fireEvent.keyDown(menu, { key: 'Escape' });
    expect(screen.queryByRole('dialog', { name: 'Bob Marley' })).toBeNull();
    await waitFor(() => expect(screen.getByRole('button', { name: /^Bob Marley/ }), 'focus returns to the participant').toHaveFocus());

    await fireEvent.contextMenu(screen.getByRole('button', { name: /^Alice/ }), { clientX: 120, clientY: 80 });
    expect(actionNames(await screen.findByRole('dialog', { name: 'Alice' }))).toEqual(['Mute for everyone', 'Kick…', 'Ban…']);
  });

  it("offers to stop someone's screen share only while they share, and stops it", async () => {
    const { backend, user } = await renderInRoom('Lounge');
    await fireEvent.contextMenu(screen.getByRole('button', { name: /^Carol/ }), { clientX: 120, clientY: 80 });
    expect(actionNames(await screen.findByRole('dialog', { name: 'Carol' })), 'carol does not share').not.toContain('Stop their screen share');
    await fireEvent.keyDown(screen.getByRole('dialog', { name: 'Carol' }), { key: 'Escape' });

    backend.setSharing('carol', true);
    await screen.findByRole('button', { name: "Watch Carol's screen" });
    await fireEvent.contextMenu(screen.getByRole('button', { name: /^Carol/ }), { clientX: 120, clientY: 80 });
    const menu = await screen.findByRole('dialog', { name: 'Carol' });
    await user.click(within(menu).getByRole('button', { name: 'Stop their screen share' }));
    expect(backend.callsOf('moderate_participant')).toEqual([{ identity: 'carol', action: 'stop_share' }]);
    await waitFor(() => expect(screen.queryByRole('button', { name: "Watch Carol's screen" }), 'the Live mark goes').toBeNull());
  });

  it('shows no moderation in a room the user does not manage, and stage actions only on a stage', async () => {
    await renderInRoom('Standup', {
      people: { standup: [person('zoe', 'Zoe')] },
    });
    await fireEvent.contextMenu(screen.getByRole('button', { name: /^Zoe/ }));
    const menu = await screen.findByRole('dialog', { name: 'Zoe' });
    expect(actionNames(menu), 'no moderation offered: none shown').toEqual([]);
    expect(within(menu).getByRole('slider')).toBeInTheDocument();
    expect(within(menu).getByRole('checkbox', { name: 'Mute for me' })).toBeInTheDocument();
  });

  it('offers invite-to-speak to listeners and move-to-audience to speakers', async () => {
    await renderInRoom('Town hall', {}, 'forum');
    await fireEvent.contextMenu(screen.getByRole('button', { name: /^Gus/ }));
    expect(actionNames(await screen.findByRole('dialog', { name: 'Gus' })), 'a listener has no right to speak to take away').toEqual([
      'Mute for everyone',
      'Kick…',
      'Ban…',
      'Invite to speak',
      'Make moderator',
    ]);
    await fireEvent.keyDown(screen.getByRole('dialog', { name: 'Gus' }), { key: 'Escape' });
    await fireEvent.contextMenu(screen.getByRole('button', { name: /^Dana/ }));
    const dana = await screen.findByRole('dialog', { name: 'Dana' });
    expect(actionNames(dana), 'a moderator is not made moderator again').toContain('Move to audience');
    expect(actionNames(dana)).not.toContain('Make moderator');
    expect(actionNames(dana)).not.toContain('Invite to speak');
  });

  it('opens from the keyboard and sends non-destructive actions at once', async () => {
    const { backend, user } = await renderInRoom('Lounge');
    screen.getByRole('button', { name: /^Alice/ }).focus();
    await user.keyboard('{Shift>}{F10}{/Shift}');
    const menu = await screen.findByRole('dialog', { name: 'Alice' });
    await user.click(within(menu).getByRole('button', { name: 'Mute for everyone' }));
    expect(backend.callsOf('moderate_participant')).toEqual([{ identity: 'alice', action: 'mute' }]);
    expect(screen.queryByRole('alertdialog'), 'mute needs no confirmation').toBeNull();
    expect(await screen.findByRole('button', { name: 'Alice, moderator, muted' })).toBeInTheDocument();
  });

  it('confirms destructive actions before sending them', async () => {
    const { backend, user } = await renderInRoom('Lounge');
    await user.click(screen.getByRole('button', { name: /^Bob Marley/ }));
    await user.click(within(await screen.findByRole('dialog', { name: 'Bob Marley' })).getByRole('button', { name: 'Kick…' }));

    let confirm = await screen.findByRole('alertdialog', { name: 'Kick' });
    expect(confirm).toHaveTextContent('Remove Bob Marley from the room?');
    expect(within(confirm).getByRole('button', { name: 'Cancel' }), 'the safe choice has focus').toHaveFocus();
    await user.click(within(confirm).getByRole('button', { name: 'Cancel' }));
    expect(backend.callsOf('moderate_participant'), 'cancel sends nothing').toEqual([]);
    expect(screen.getByRole('button', { name: /^Bob Marley/ })).toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: /^Bob Marley/ }));
    await user.click(within(await screen.findByRole('dialog', { name: 'Bob Marley' })).getByRole('button', { name: 'Ban…' }));
    confirm = await screen.findByRole('alertdialog', { name: 'Ban' });
    await user.click(within(confirm).getByRole('button', { name: 'Ban' }));
    expect(backend.callsOf('moderate_participant')).toEqual([{ identity: 'bob', action: 'ban' }]);
    await waitFor(() => expect(screen.queryByRole('button', { name: /^Bob Marley/ }), 'the banned participant is gone').toBeNull());
  });

  it('sends the volume when the slider is released, and local mute', async () => {
    const { backend, user } = await renderInRoom('Lounge');
    await user.click(screen.getByRole('button', { name: /^Carol/ }));
    const menu = await screen.findByRole('dialog', { name: 'Carol' });
    const slider = within(menu).getByRole('slider');
    expect(slider).toHaveValue('100');

    await fireEvent.input(slider, { target: { value: '50' } });
    expect(within(menu).getByText('50 %'), 'the value shows while dragging').toBeInTheDocument();
    expect(backend.callsOf('set_volume'), 'nothing is sent while dragging').toEqual([]);
    await fireEvent.change(slider);
    expect(backend.callsOf('set_volume')).toEqual([{ identity: 'carol', percent: 50 }]);

    await user.click(within(menu).getByRole('checkbox', { name: 'Mute for me' }));
    expect(backend.callsOf('set_local_mute')).toEqual([{ identity: 'carol', muted: true }]);
    expect(await screen.findByRole('button', { name: 'Carol, muted for you, volume 50 %, poor connection' })).toBeInTheDocument();
  });

  it('offers hard mute to a speaker and restore to whoever is hard-muted, and shows the change', async () => {
    const { backend, user } = await renderInRoom('Town hall', {}, 'forum');
    await user.click(screen.getByRole('button', { name: /^Hana/ }));
    const hana = await screen.findByRole('dialog', { name: 'Hana' });
    expect(actionNames(hana)).toContain('Restore speaking');
    expect(actionNames(hana)).not.toContain('Hard mute…');
    await fireEvent.keyDown(hana, { key: 'Escape' });

    await user.click(screen.getByRole('button', { name: /^Erin/ }));
    const erin = await screen.findByRole('dialog', { name: 'Erin' });
    expect(actionNames(erin)).not.toContain('Restore speaking');
    await user.click(within(erin).getByRole('button', { name: 'Hard mute…' }));
    const confirm = await screen.findByRole('alertdialog', { name: 'Hard mute' });
    await user.click(within(confirm).getByRole('button', { name: 'Hard mute' }));
    expect(backend.callsOf('moderate_participant')).toEqual([{ identity: 'erin', action: 'hard_mute' }]);
    expect(await screen.findByRole('button', { name: 'Erin, speaker, hard muted by a moderator, deafened' })).toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: /^Erin/ }));
    const again = await screen.findByRole('dialog', { name: 'Erin' });
    expect(actionNames(again), 'now the way back is offered instead').toContain('Restore speaking');
    expect(actionNames(again)).not.toContain('Hard mute…');
  });

  it('reports a refused action', async () => {
    const { backend, user } = await renderInRoom('Lounge', {
      rooms: { local: [room('lounge', 'Lounge', { canManage: true })] },
      moderation: { local: [option('mute')] },
    });
    backend.fail('moderate_participant', { code: 'forbidden', message: 'not allowed: you are not a moderator here' });
    await user.click(screen.getByRole('button', { name: /^Alice/ }));
    await user.click(within(await screen.findByRole('dialog', { name: 'Alice' })).getByRole('button', { name: 'Mute for everyone' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('not allowed: you are not a moderator here');
  });

  it('marks an unencrypted participant in an encrypted call and plays them only when asked', async () => {
    const { backend, user } = await renderInRoom('Standup', {
      encrypted: ['standup'],
      people: {
        standup: [person('zoe', 'Zoe', { encryption: 'ok' }), person('keyless', 'Keyless', { encryption: 'not_encrypted' })],
      },
    });
    expect(screen.getByRole('img', { name: 'End-to-end encrypted' }), 'the room header shows the lock').toBeInTheDocument();
    const tile = screen.getByRole('button', { name: /^Keyless/ });
    expect(tile, 'the tile says why they are not heard').toHaveAccessibleName(/not encrypted, not played/);
    expect(screen.getByRole('button', { name: /^Zoe/ })).not.toHaveAccessibleName(/encrypted/);

    await fireEvent.contextMenu(tile);
    const menu = await screen.findByRole('dialog', { name: 'Keyless' });
    expect(within(menu).getByText(/not end-to-end encrypted/)).toBeInTheDocument();
    await user.click(within(menu).getByRole('button', { name: 'Play anyway (not encrypted)' }));
    expect(backend.callsOf('allow_unencrypted')).toEqual([{ identity: 'keyless' }]);
    await waitFor(() =>
      expect(screen.getByRole('button', { name: /^Keyless/ }), 'now heard, still marked').toHaveAccessibleName(/not encrypted$/),
    );

    await fireEvent.contextMenu(screen.getByRole('button', { name: /^Zoe/ }));
    const zoe = await screen.findByRole('dialog', { name: 'Zoe' });
    expect(within(zoe).queryByRole('button', { name: /Play anyway/ }), 'nothing to allow for an encrypted peer').toBeNull();
  });
});
