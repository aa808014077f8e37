import { fireEvent, screen, waitFor, within } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';

import { renderApp } from './harness';

async function openSettings(options: Parameters<typeof renderApp>[0] = {}) {
  const rendered = await renderApp(options);
  await rendered.user.click(screen.getByRole('button', { name: 'Settings' }));
  const dialog = await screen.findByRole('dialog', { name: 'Settings' });
  return { ...rendered, dialog };
}

describe('settings', () => {
  it('draws the voice threshold on the live meter and saves a new one', async () => {
    const { backend, dialog } = await openSettings();
    const meter = within(dialog).getByRole('meter', { name: 'Microphone level' });
    const marker = within(meter).getByTestId('vad-threshold');
    // −45 dBFS on the −60…0 meter: a quarter of the way.
    expect(parseFloat(marker.style.left), 'the marker sits at the saved threshold').toBe(25);

    const slider = within(dialog).getByRole('slider', { name: /Voice threshold/ });
    await fireEvent.input(slider, { target: { value: '-30' } });
    await fireEvent.change(slider);
    expect(backend.callsOf('update_settings').at(-1)).toMatchObject({ settings: { vadThresholdDbfs: -30 } });
    await waitFor(() => expect(parseFloat(marker.style.left), 'the marker follows the new threshold').toBe(50));

    // The live meter: below the threshold, then above it.
    backend.setLevels({}, -40);
    await waitFor(() => expect(meter).toHaveAttribute('aria-valuenow', '-40'));
    expect(meter.querySelector('.fill')).not.toHaveClass('above');
    expect(parseFloat((meter.querySelector('.fill') as HTMLElement).style.width), 'the fill follows the level').toBeCloseTo(33.3, 1);
    backend.setLevels({}, -12);
    await waitFor(() => expect(meter).toHaveAttribute('aria-valuenow', '-12'));
    expect(meter.querySelector('.fill'), 'speech above the threshold is drawn as transmitted').toHaveClass('above');
  });

  it('sends each change at once, with the whole settings object', async () => {
    const { backend, user, dialog } = await openSettings();
    await user.click(within(dialog).getByRole('checkbox', { name: 'Noise suppression' }));
    expect(backend.callsOf('update_settings').at(-1)).toMatchObject({ settings: { noiseSuppression: false, echoCancellation: true } });
    await user.click(within(dialog).getByRole('radio', { name: 'Push to talk' }));
    expect(backend.callsOf('update_settings').at(-1)).toMatchObject({ settings: { transmitMode: 'push_to_talk' } });
    expect(within(dialog).queryByRole('slider', { name: /Voice threshold/ }), 'the threshold only applies to voice activity').toBeNull();
    await user.selectOptions(within(dialog).getByLabelText('Microphone'), 'usb-mic');
    expect(backend.callsOf('update_settings').at(-1)).toMatchObject({ settings: { inputDevice: 'usb-mic' } });
    const delay = within(dialog).getByRole('slider', { name: /release delay/ });
    await fireEvent.input(delay, { target: { value: '500' } });
    await fireEvent.change(delay);
    expect(backend.callsOf('update_settings').at(-1)).toMatchObject({ settings: { pttReleaseDelayMs: 500 } });
    await user.click(within(dialog).getByRole('checkbox', { name: 'Launch at login' }));
    expect(backend.callsOf('update_settings').at(-1)).toMatchObject({ settings: { launchAtLogin: true, startMinimized: false } });
  });

  it('captures a push-to-talk key', async () => {
    const { backend, user, dialog } = await openSettings();
    const key = within(dialog).getByRole('button', { name: 'Push-to-talk key' });
    expect(key).toHaveTextContent('Ctrl+Shift+P');
    await user.click(key);
    expect(key).toHaveTextContent('Press the keys…');
    await user.keyboard('{Control>}{Alt>}t{/Alt}{/Control}');
    expect(backend.callsOf('update_settings').at(-1)).toMatchObject({
      settings: { shortcuts: { pushToTalk: 'Control+Alt+T', toggleMute: 'CommandOrControl+Shift+M', toggleDeafen: null } },
    });
    await waitFor(() => expect(key, 'the new key is shown').toHaveTextContent('Ctrl+Alt+T'));

    const saves = backend.callsOf('update_settings').length;
    await user.click(key);
    await user.keyboard('{Escape}');
    expect(screen.getByRole('dialog', { name: 'Settings' }), 'Escape while capturing does not close settings').toBeInTheDocument();
    expect(key, 'Escape cancels the capture').toHaveTextContent('Ctrl+Alt+T');
    expect(backend.callsOf('update_settings'), 'a cancelled capture saves nothing').toHaveLength(saves);
  });

  it('says plainly when global shortcuts do not work', async () => {
    const { dialog } = await openSettings({
      shortcutSupport: { globalShortcuts: false, message: 'no GlobalShortcuts portal on this Wayland session', failed: [] },
    });
    const note = within(dialog).getByRole('note');
    expect(note).toHaveTextContent('parley ctl ptt-start');
    expect(note).toHaveTextContent('parley ctl ptt-stop');
    expect(note).toHaveTextContent('no GlobalShortcuts portal on this Wayland session');
  });

  it('does not show the statement where shortcuts work', async () => {
    const { dialog } = await openSettings();
    expect(within(dialog).queryByRole('note')).toBeNull();
  });

  it('shows the keys the desktop portal assigned where it binds them', async () => {
    const message = "Your desktop's shortcuts portal handles these keys (Push to talk (hold): Ctrl+Shift+P)";
    const { dialog } = await openSettings({ shortcutSupport: { globalShortcuts: true, message, failed: [] } });
    expect(within(dialog).queryByRole('note'), 'no warning: the shortcuts work').toBeNull();
    expect(within(dialog).getByRole('status', { name: 'Shortcuts through the desktop' })).toHaveTextContent('Push to talk (hold): Ctrl+Shift+P');
  });

  it('runs the mic test and checks for updates', async () => {
    const { backend, user, dialog } = await openSettings({
      update: { available: true, currentVersion: '0.1.0', version: '0.2.0', notes: 'Screen share.' },
    });
    await user.click(within(dialog).getByRole('button', { name: 'Test microphone' }));
    expect(backend.micTest).toBe(true);
    expect(within(dialog).getByRole('button', { name: 'Stop test' })).toHaveAttribute('aria-pressed', 'true');

    await user.click(within(dialog).getByRole('button', { name: 'Check for updates' }));
    expect(await within(dialog).findByText('Version 0.2.0 is available (you have 0.1.0).')).toBeInTheDocument();
    await user.click(within(dialog).getByRole('button', { name: 'Install and restart' }));
    expect(backend.callsOf('install_update')).toEqual([{}]);

    await user.click(within(dialog).getByRole('button', { name: 'Done' }));
    expect(screen.queryByRole('dialog', { name: 'Settings' })).toBeNull();
    expect(backend.micTest, 'closing settings stops the mic test').toBe(false);
    expect(screen.getByRole('button', { name: 'Settings' }), 'focus returns to the settings button').toHaveFocus();
  });

  it('keeps Tab inside the dialog', async () => {
    const { user, dialog } = await openSettings();
    const done = within(dialog).getByRole('button', { name: 'Done' });
    done.focus();
    await user.tab();
    expect(dialog.contains(document.activeElement), 'Tab from the last control wraps to the first').toBe(true);
  });
});
