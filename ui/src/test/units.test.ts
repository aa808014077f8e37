import { describe, expect, it, vi } from 'vitest';

import { toBackendError } from '../lib/backend';
import { initials, isSpeaking, levelFraction } from '../lib/level';
import { actionsFor } from '../lib/moderation';
import { option, person } from '../lib/backend/memory';
import type { StateUpdate } from '../lib/types';
import { acceleratorFrom, describeAccelerator } from '../lib/shortcut';

const invoke = vi.fn();
vi.mock('@tauri-apps/api/core', () => ({ invoke: (...args: unknown[]) => invoke(...args) }));
vi.mock('@tauri-apps/api/event', () => ({ listen: vi.fn() }));

describe('tauri backend', () => {
  it('passes arguments as the contract names them and keeps error codes', async () => {
    const { tauriBackend } = await import('../lib/backend/tauri');
    const backend = tauriBackend();
    invoke.mockResolvedValueOnce(null);
    await backend.invoke('join_room', { profile: 'home', room: 'lounge', switchRooms: true });
    expect(invoke).toHaveBeenLastCalledWith('join_room', { profile: 'home', room: 'lounge', switchRooms: true });

    invoke.mockResolvedValueOnce(null);
    await backend.invoke('leave_room');
    expect(invoke, 'commands without arguments get an empty object').toHaveBeenLastCalledWith('leave_room', {});

    invoke.mockRejectedValueOnce({ code: 'room_full', message: 'the room is full' });
    await expect(backend.invoke('join_room', { profile: 'home', room: 'x', switchRooms: false })).rejects.toMatchObject({
      code: 'room_full',
      message: 'the room is full',
    });

    // Tauri's own refusals are strings: no code to branch on, so `internal`.
    invoke.mockRejectedValueOnce('command set_muted not allowed by ACL');
    await expect(backend.invoke('set_muted', { muted: true })).rejects.toMatchObject({ code: 'internal' });
  });
});

describe('tauri backend state', () => {
  it('pulls each new snapshot with next_state, asking again after an unchanged long poll, until unsubscribed', async () => {
    const { tauriBackend } = await import('../lib/backend/tauri');
    const { IDLE_STATE } = await import('../lib/backend');
    const snapshot = (muted: boolean) => ({ ...IDLE_STATE, local: { ...IDLE_STATE.local, muted } });
    const levels = (inputDbfs: number) => ({ inputDbfs, participants: [] });
    const answers = [
      { revision: 1, state: snapshot(false), levels: levels(-100) },
      { revision: 1, state: null, levels: levels(-100) }, // the long poll ran out with nothing new
      { revision: 3, state: snapshot(true), levels: levels(-30) },
      { revision: 4, state: null, levels: levels(-20) }, // the levels alone changed
    ];
    const asked: unknown[] = [];
    let release: () => void = () => {};
    const parked = new Promise<void>((resolve) => (release = resolve));
    invoke.mockReset();
    invoke.mockImplementation(async (command: string, args: unknown) => {
      asked.push([command, args]);
      const answer = answers.shift();
      if (answer) return answer;
      await parked; // waiting for a change that comes after the test unsubscribed
      return { revision: 5, state: snapshot(false), levels: levels(-100) };
    });
    const seen: unknown[] = [];
    const unsubscribe = await tauriBackend().onStateChanged((update) =>
      seen.push([update.state?.local.muted ?? 'levels only', update.levels.inputDbfs]),
    );
    await vi.waitFor(() => expect(asked).toHaveLength(5));
    expect(asked).toEqual([
      ['next_state', { after: 0 }],
      ['next_state', { after: 1 }],
      ['next_state', { after: 1 }],
      ['next_state', { after: 3 }],
      ['next_state', { after: 4 }],
    ]);
    const expected = [
      [false, -100],
      [true, -30],
      ['levels only', -20],
    ];
    expect(seen, 'each new snapshot once, the unchanged answer not at all').toEqual(expected);
    unsubscribe();
    release();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(seen, 'nothing after unsubscribing').toEqual(expected);
    expect(asked).toHaveLength(5);
  });

  it('keeps asking after a failed poll', async () => {
    vi.useFakeTimers();
    try {
      const { tauriBackend } = await import('../lib/backend/tauri');
      const { IDLE_STATE } = await import('../lib/backend');
      invoke.mockReset();
      invoke.mockRejectedValueOnce('the window is closing');
      const update = { revision: 1, state: IDLE_STATE, levels: { inputDbfs: -100, participants: [] } };
      invoke.mockResolvedValueOnce(update);
      invoke.mockImplementation(() => new Promise(() => {}));
      const seen: unknown[] = [];
      const unsubscribe = await tauriBackend().onStateChanged((update) => seen.push(update));
      await vi.advanceTimersByTimeAsync(1500);
      expect(seen).toEqual([update]);
      expect(invoke).toHaveBeenCalledTimes(3);
      unsubscribe();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('memory backend state', () => {
  it('answers next_state at once when behind and on the next change when up to date', async () => {
    const { MemoryBackend } = await import('../lib/backend/memory');
    const backend = new MemoryBackend();
    const first = await backend.invoke('next_state', { after: 0 });
    let later: StateUpdate | null = null;
    void backend.invoke('next_state', { after: first.revision }).then((update) => (later = update));
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(later, 'nothing changed yet').toBeNull();
    await backend.invoke('set_muted', { muted: true });
    await vi.waitFor(() => expect(later).not.toBeNull());
    expect(later!.revision).toBeGreaterThan(first.revision);
    expect(later!.state?.local.muted).toBe(true);
  });

  it('answers with the levels alone when nothing else changed since the window\'s snapshot', async () => {
    const { MemoryBackend } = await import('../lib/backend/memory');
    const backend = new MemoryBackend({ joined: { profile: 'local', room: 'lounge' } });
    const first = await backend.invoke('next_state', { after: 0 });
    const people = first.state?.call?.participants.map((p) => p.identity) ?? [];
    expect(people.length, 'the demo room has people').toBeGreaterThan(1);
    backend.setLevels({ [people[1]!]: -12 }, -30);
    const levels = await backend.invoke('next_state', { after: first.revision });
    expect(levels.state, 'only levels changed').toBeNull();
    expect(levels.levels.inputDbfs).toBe(-30);
    expect(levels.levels.participants[1], "in the order of the state's participants").toBe(-12);
    await backend.invoke('set_muted', { muted: true });
    const whole = await backend.invoke('next_state', { after: levels.revision });
    expect(whole.state?.local.muted, 'a mute is more than a level').toBe(true);
    expect(whole.state?.local.inputLevelDbfs, 'the whole state holds the levels too').toBe(-30);
    const stale = await backend.invoke('next_state', { after: first.revision });
    expect(stale.state, 'a window from before the mute gets the whole state').not.toBeNull();
  });
});

describe('helpers', () => {
  it('maps levels onto the meter', () => {
    expect(levelFraction(-60)).toBe(0);
    expect(levelFraction(-30)).toBe(0.5);
    expect(levelFraction(3)).toBe(1);
    expect(levelFraction(-Infinity)).toBe(0);
    expect(isSpeaking(-45)).toBe(true);
    expect(isSpeaking(-46)).toBe(false);
  });

  it('makes initials', () => {
    expect(initials('Bob Marley')).toBe('BM');
    expect(initials('alice')).toBe('AL');
    expect(initials('  ')).toBe('?');
    expect(initials('Élodie Ünal')).toBe('ÉÜ');
  });

  it('turns key presses into accelerators and back', () => {
    const press = (init: KeyboardEventInit) => new KeyboardEvent('keydown', init);
    expect(acceleratorFrom(press({ code: 'KeyP', ctrlKey: true, shiftKey: true }))).toBe('Control+Shift+P');
    expect(acceleratorFrom(press({ code: 'F9' }))).toBe('F9');
    expect(acceleratorFrom(press({ code: 'ShiftLeft', shiftKey: true })), 'modifiers alone are not a shortcut').toBeNull();
    expect(describeAccelerator('CommandOrControl+Shift+KeyP')).toBe('Ctrl+Shift+P');
  });

  it('offers moderation by participant state', () => {
    const all = (['mute', 'unmute', 'kick', 'unban', 'invite_to_speak', 'move_to_audience'] as const).map(option);
    const names = (p: Parameters<typeof actionsFor>[0], stage: boolean) => actionsFor(p, all, stage).map((o) => o.action);
    expect(names(person('a', 'A', { muted: true }), false)).toEqual(['unmute', 'kick']);
    expect(names(person('a', 'A', { role: 'listener' }), true)).toEqual(['mute', 'kick', 'invite_to_speak']);
    expect(names(person('a', 'A', { role: 'speaker' }), true)).toEqual(['mute', 'kick', 'move_to_audience']);
  });

  it('turns anything thrown into a coded error', () => {
    expect(toBackendError(new Error('boom')).code).toBe('internal');
    expect(toBackendError({ code: 'kicked', message: 'out' }).code).toBe('kicked');
  });
});
