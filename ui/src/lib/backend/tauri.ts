// The desktop shell's backend: Tauri commands and events.
//
// Arguments go to `invoke` as the generated contract spells them (camelCase; Tauri maps them to
// the Rust parameters). Failures arrive as `{code, message}`; Tauri's own rejections (a command
// the capability does not allow, one that does not exist) are plain strings and become
// `internal`.

import { convertFileSrc, invoke } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';

import { toBackendError, type ArgList, type Backend, type CommandName, type ResultOf, type Unsubscribe } from '../backend';
import { EVENT_NAMES, PENDING_EVENT_NAMES, type Notice, type StateUpdate } from '../types';

async function subscribe<T>(event: string, listener: (payload: T) => void): Promise<Unsubscribe> {
  return listen<T>(event, (message) => listener(message.payload));
}

/// How long to wait before asking again after `next_state` failed (the shell is closing, or a
/// bug): long enough not to spin, short enough that the window catches up quickly.
const RETRY_MS = 1000;

/// Pulls state snapshots with `next_state` (a long poll: it answers when the state changes)
/// rather than listening for events; `StateUpdate` in the generated bindings says why.
/// Snapshots that change while one is being drawn are skipped in favour of the newest: the
/// shell sends the whole state whenever more than the levels changed since `after`.
function pollState(listener: (update: StateUpdate) => void): Unsubscribe {
  let running = true;
  let after = 0;
  void (async () => {
    while (running) {
      try {
        const update = await invoke<StateUpdate>('next_state', { after });
        if (!running) break;
        if (update.revision === after) continue; // nothing changed during the long poll
        after = update.revision;
        listener(update);
      } catch {
        // The shell logs its own failures; the window just catches up when it answers again.
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  })();
  return () => {
    running = false;
  };
}

export function tauriBackend(): Backend {
  return {
    async invoke<K extends CommandName>(command: K, ...args: ArgList<K>): Promise<ResultOf<K>> {
      try {
        return await invoke<ResultOf<K>>(command, args[0] ?? {});
      } catch (error) {
        throw toBackendError(error);
      }
    },
    onStateChanged: async (listener) => pollState(listener),
    onNotice: (listener) => subscribe<Notice>(EVENT_NAMES.noticePosted, listener),
    onDeepLink: (listener) => subscribe<string>(PENDING_EVENT_NAMES.deepLinkOpened, listener),
    // The shell's `parley-frame` scheme (`http://parley-frame.localhost/…` on Windows).
    frameUrl: (identity) => convertFileSrc(identity, 'parley-frame'),
    // The shell says so before our scripts run (Linux's shell paints pictures itself).
    paintsShares: (window as { __PARLEY_PAINTS_SHARES__?: boolean }).__PARLEY_PAINTS_SHARES__ === true,
  };
}

/// Whether this page runs inside the Tauri shell (its IPC bridge is injected before our script).
export function inTauri(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}
