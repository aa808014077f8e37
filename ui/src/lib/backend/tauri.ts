// The desktop shell's backend: Tauri commands and events.
//
// Arguments go to `invoke` as the generated contract spells them (camelCase; Tauri maps them to
// the Rust parameters). Failures arrive as `{code, message}`; Tauri's own rejections (a command
// the capability does not allow, one that does not exist) are plain strings and become
// `internal`.

import { invoke } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';

import { toBackendError, type ArgList, type Backend, type CommandName, type ResultOf, type Unsubscribe } from '../backend';
import { EVENT_NAMES, PENDING_EVENT_NAMES, type ClientState, type Notice } from '../types';

async function subscribe<T>(event: string, listener: (payload: T) => void): Promise<Unsubscribe> {
  return listen<T>(event, (message) => listener(message.payload));
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
    onStateChanged: (listener) => subscribe<ClientState>(EVENT_NAMES.stateChanged, listener),
    onNotice: (listener) => subscribe<Notice>(EVENT_NAMES.noticePosted, listener),
    onDeepLink: (listener) => subscribe<string>(PENDING_EVENT_NAMES.deepLinkOpened, listener),
  };
}

/// Whether this page runs inside the Tauri shell (its IPC bridge is injected before our script).
export function inTauri(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}
