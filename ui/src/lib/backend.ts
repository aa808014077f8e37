// The one typed interface between the UI and whatever runs the call (STYLE.md rule 16).
//
// Commands and their argument and result types come from the generated contract
// (`generated/commands.ts`), so a change on the Rust side fails `npm run check` here. Two
// implementations: `backend/tauri.ts` (the desktop shell: `invoke` + `listen`) and
// `backend/memory.ts` (component tests, and `npm run dev` in a plain browser). Components get
// the backend from context (`context.ts`) and never import either implementation.

import type {
  ClientError,
  ClientState,
  Commands,
  ErrorCode,
  Notice,
  PendingCommands,
  StateUpdate,
} from './types';

export type Unsubscribe = () => void;

export type AllCommands = Commands & PendingCommands;
export type CommandName = keyof AllCommands;
export type ArgsOf<K extends CommandName> = AllCommands[K]['args'];
export type ResultOf<K extends CommandName> = AllCommands[K]['result'];
/// Commands without arguments are called with none: `invoke('leave_room')`.
export type ArgList<K extends CommandName> = ArgsOf<K> extends Record<string, never> ? [] : [ArgsOf<K>];

export interface Backend {
  invoke<K extends CommandName>(command: K, ...args: ArgList<K>): Promise<ResultOf<K>>;
  /// Every change (≈10/s in a call, for levels): the levels, and the whole state unless only
  /// the levels changed (`state: null`); a newer change may replace ones the listener has not
  /// seen yet, never a whole state by levels alone.
  onStateChanged(listener: (update: StateUpdate) => void): Promise<Unsubscribe>;
  /// `notice-posted`: one-off notices (call ended, room went live, device changed, warning).
  onNotice(listener: (notice: Notice) => void): Promise<Unsubscribe>;
  /// `deep-link-opened`: a `parley://` URL the shell did not handle itself (the forum's
  /// `parley://auth_redirect?payload=…` after the Discourse sign-in).
  onDeepLink(listener: (url: string) => void): Promise<Unsubscribe>;
  /// The address a watched share's viewer long-polls for pictures (`?after=<seq>`: the answer
  /// is the next JPEG with its `X-Frame-Seq`, or 204), or `null` when this backend has none.
  frameUrl(identity: string): string | null;
  /// The shell paints watched shares' pictures itself, over the viewer's place in the window
  /// (Linux's app: WebKitGTK showing each picture cost a fifth of a core more). The viewer then
  /// loads no pictures: it tells the shell where it is (`place_share`), and hides its picture
  /// while a dialog or menu of the page would be under it.
  readonly paintsShares: boolean;
}

/// Every command's failure. The UI branches on `code`, never on `message`.
export class BackendError extends Error {
  readonly code: ErrorCode;

  constructor(error: ClientError) {
    super(error.message);
    this.name = 'BackendError';
    this.code = error.code;
  }

  toClientError(): ClientError {
    return { code: this.code, message: this.message };
  }
}

/// Turns anything a command threw into a [`BackendError`]: IPC errors keep their code; anything
/// else (a rejected permission, a missing command, a bug) becomes `internal`.
export function toBackendError(error: unknown): BackendError {
  if (error instanceof BackendError) return error;
  if (isClientError(error)) return new BackendError(error);
  const message = error instanceof Error ? error.message : String(error);
  return new BackendError({ code: 'internal', message });
}

function isClientError(value: unknown): value is ClientError {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { code?: unknown }).code === 'string' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

export const IDLE_STATE: ClientState = {
  call: null,
  local: {
    muted: false,
    deafened: false,
    transmitting: false,
    pttHeld: false,
    transmitMode: 'voice_activity',
    inputLevelDbfs: -100,
  },
  link: null,
};
