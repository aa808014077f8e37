import { screen, waitFor, within } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';

import { renderInRoom } from './harness';

describe('control bar', () => {
  it('toggles mute and deafen through the backend', async () => {
    const { backend, user } = await renderInRoom('Lounge');
    const bar = screen.getByRole('toolbar', { name: 'Call controls' });
    const mute = within(bar).getByRole('button', { name: 'Mute' });
    const deafen = within(bar).getByRole('button', { name: 'Deafen' });
    expect(mute).toHaveAttribute('aria-pressed', 'false');

    await user.click(mute);
    expect(backend.callsOf('set_muted')).toEqual([{ muted: true }]);
    expect(mute).toHaveAttribute('aria-pressed', 'true');
    expect(within(bar).getByTestId('gate-state')).toHaveTextContent('Muted');
    expect(screen.getByRole('group', { name: /^You/ })).toHaveAccessibleName('You, muted');

    await user.click(mute);
    expect(backend.callsOf('set_muted')).toEqual([{ muted: true }, { muted: false }]);
    expect(mute).toHaveAttribute('aria-pressed', 'false');

    await user.click(deafen);
    expect(backend.callsOf('set_deafened')).toEqual([{ deafened: true }]);
    expect(deafen).toHaveAttribute('aria-pressed', 'true');
    expect(screen.getByRole('group', { name: /^You/ })).toHaveAccessibleName('You, deafened');
  });

  it("says when the room does not let us speak, until we are invited", async () => {
    const { backend } = await renderInRoom('Town hall', {}, 'forum');
    const gate = screen.getByTestId('gate-state');
    expect(gate, 'a stage listener hears but cannot speak').toHaveTextContent('Listening: a moderator can invite you to speak');
    backend.setCanSpeak(true);
    await waitFor(() => expect(gate, 'invited, the gate shows the transmit state again').not.toHaveTextContent(/moderator can invite/));
    expect(gate.textContent).toMatch(/Mic open|Listening for voice|Hold .* to talk/);
  });

  it('shows the push-to-talk state and changes the transmit mode', async () => {
    const { backend, user } = await renderInRoom('Lounge', { settings: { transmitMode: 'push_to_talk' } });
    const gate = screen.getByTestId('gate-state');
    expect(gate).toHaveTextContent('Hold Ctrl+Shift+P to talk');

    backend.setPushToTalk(true);
    await within(screen.getByRole('toolbar')).findByText('Talking');
    backend.setLevels({}, -20);
    expect(await screen.findByRole('group', { name: 'You, speaking' }), 'our ring shows while we transmit').toBeInTheDocument();
    backend.setPushToTalk(false);
    await within(screen.getByRole('toolbar')).findByText('Hold Ctrl+Shift+P to talk');

    await user.selectOptions(screen.getByLabelText('Transmit mode'), 'open_mic');
    expect(backend.callsOf('update_settings').at(-1), 'the mode is saved in the settings').toMatchObject({
      settings: { transmitMode: 'open_mic', pttReleaseDelayMs: 200 },
    });
    expect(await within(screen.getByRole('toolbar')).findByText('Mic open')).toBeInTheDocument();
  });

  it('talks while the hold button is held, by pointer or keyboard', async () => {
    const { backend, user } = await renderInRoom('Lounge', { settings: { transmitMode: 'push_to_talk' } });
    const button = screen.getByRole('button', { name: 'Hold to talk' });
    await user.pointer({ keys: '[MouseLeft>]', target: button });
    expect(backend.callsOf('push_to_talk')).toEqual([{ pressed: true }]);
    expect(await within(screen.getByRole('toolbar')).findByText('Talking')).toBeInTheDocument();
    await user.pointer({ keys: '[/MouseLeft]', target: button });
    expect(backend.callsOf('push_to_talk')).toEqual([{ pressed: true }, { pressed: false }]);

    button.focus();
    await user.keyboard('[Space>]');
    await user.keyboard('[/Space]');
    expect(backend.callsOf('push_to_talk').slice(2)).toEqual([{ pressed: true }, { pressed: false }]);
  });

  it('takes the push-to-talk key inside the window only where global shortcuts do not work', async () => {
    const wayland = await renderInRoom('Lounge', {
      settings: { transmitMode: 'push_to_talk' },
      shortcutSupport: { globalShortcuts: false, message: null, failed: [] },
    });
    await wayland.user.keyboard('{Control>}{Shift>}{P>}');
    expect(wayland.backend.callsOf('push_to_talk'), 'the key press starts talking').toEqual([{ pressed: true }]);
    await wayland.user.keyboard('{/Shift}{/Control}');
    expect(wayland.backend.callsOf('push_to_talk'), 'releasing modifiers alone does not stop').toHaveLength(1);
    await wayland.user.keyboard('{/P}');
    expect(wayland.backend.callsOf('push_to_talk'), 'releasing the key stops').toEqual([{ pressed: true }, { pressed: false }]);
    wayland.unmount();

    const x11 = await renderInRoom('Lounge', { settings: { transmitMode: 'push_to_talk' } });
    await x11.user.keyboard('{Control>}{Shift>}P{/Shift}{/Control}');
    expect(x11.backend.callsOf('push_to_talk'), 'the shell handles the key where global shortcuts work').toEqual([]);
  });

  it('shares a window picked by name at the quality chosen, and stops sharing', async () => {
    const { backend, user } = await renderInRoom('Lounge');
    const bar = screen.getByRole('toolbar', { name: 'Call controls' });
    await user.click(within(bar).getByRole('button', { name: 'Share screen' }));

    const dialog = await screen.findByRole('dialog', { name: 'Share your screen' });
    const editor = await within(dialog).findByRole('radio', { name: /Editor/ });
    expect(within(dialog).getAllByRole('radio').map((radio) => radio.textContent?.trim())).toEqual([
      'Screen 0 1920×1080',
      'Editor 1280×800',
    ]);
    await user.click(editor);
    expect(editor).toHaveAttribute('aria-checked', 'true');
    await user.selectOptions(within(dialog).getByRole('combobox', { name: 'Quality' }), '1080p30');
    const priority = within(dialog).getByRole('combobox', { name: 'When bandwidth is short' });
    expect(priority, 'text stays sharp unless asked').toHaveValue('detail');
    await user.selectOptions(priority, 'motion');
    expect(within(dialog).getByRole('combobox', { name: 'Sound' }), 'no sound unless asked').toHaveValue('');
    await user.click(within(dialog).getByRole('button', { name: 'Share' }));

    await waitFor(() => expect(screen.queryByRole('dialog', { name: 'Share your screen' })).toBeNull());
    expect(backend.callsOf('start_share')).toEqual([
      { target: 'window:0x1a00007', quality: '1080p30', priority: 'motion', sound: null },
    ]);
    expect(screen.getByRole('group', { name: /^You/ }), 'our tile says we share').toHaveAccessibleName('You, sharing your screen');
    const stop = within(bar).getByRole('button', { name: 'Stop sharing' });
    await user.click(stop);
    expect(backend.callsOf('stop_share')).toHaveLength(1);
    await within(bar).findByRole('button', { name: 'Share screen' });
  });

  it("shares an application's sound with the picture, and says which", async () => {
    const { backend, user } = await renderInRoom('Lounge');
    const bar = screen.getByRole('toolbar', { name: 'Call controls' });
    await user.click(within(bar).getByRole('button', { name: 'Share screen' }));
    const dialog = await screen.findByRole('dialog', { name: 'Share your screen' });
    const sound = await within(dialog).findByRole('combobox', { name: 'Sound' });
    expect(within(sound).getAllByRole('option').map((option) => option.textContent)).toEqual([
      'None',
      'Firefox — Trailer — YouTube',
      'Game',
    ]);
    await user.selectOptions(sound, 'Game');
    await user.click(within(dialog).getByRole('button', { name: 'Share' }));

    await waitFor(() => expect(backend.callsOf('start_share')).toEqual([
      { target: 'screen:0', quality: '720p30', priority: 'detail', sound: '#15' },
    ]));
    const stop = await within(bar).findByRole('button', { name: 'Stop sharing' });
    expect(stop).toHaveAttribute('title', 'Sharing 0 with the sound of Game');
  });

  it("offers no sound where the platform cannot share one, and says why when it cannot now", async () => {
    const first = await renderInRoom('Lounge');
    first.backend.fail('list_share_sounds', { code: 'unsupported', message: "sharing an application's sound is available on Linux only for now" });
    await first.user.click(screen.getByRole('button', { name: 'Share screen' }));
    let dialog = await screen.findByRole('dialog', { name: 'Share your screen' });
    await within(dialog).findByRole('radio', { name: /Editor/ });
    expect(within(dialog).queryByRole('combobox', { name: 'Sound' })).toBeNull();
    expect(within(dialog).queryByText(/sound can be shared/)).toBeNull();
    first.unmount();

    const second = await renderInRoom('Lounge');
    second.backend.fail('list_share_sounds', { code: 'unreachable', message: 'application sounds: no sound server to reach' });
    await second.user.click(screen.getByRole('button', { name: 'Share screen' }));
    dialog = await screen.findByRole('dialog', { name: 'Share your screen' });
    expect(await within(dialog).findByText("No application's sound can be shared now: application sounds: no sound server to reach")).toBeInTheDocument();
    await second.user.click(within(dialog).getByRole('button', { name: 'Share' }));
    await waitFor(() => expect(second.backend.callsOf('start_share')).toEqual([
      { target: 'screen:0', quality: '720p30', priority: 'detail', sound: null },
    ]));
  });

  it('says so instead of sharing where the room does not allow it', async () => {
    await renderInRoom('Town hall', {}, 'forum');
    const share = within(screen.getByRole('toolbar', { name: 'Call controls' })).getByRole('button', { name: 'Share screen' });
    expect(share).toBeDisabled();
    expect(share).toHaveAttribute('title', 'This room does not allow screen sharing');
  });

  it('leaves the room', async () => {
    const { backend, user } = await renderInRoom('Lounge');
    await user.click(screen.getByRole('button', { name: 'Leave' }));
    expect(backend.callsOf('leave_room')).toEqual([{}]);
    expect(await screen.findByText('Pick a room to join.')).toBeInTheDocument();
  });
});
