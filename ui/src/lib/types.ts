// The shapes that cross IPC. The Rust side generates them into `./generated/` (ts-rs, from
// `crates/core/src/client/`); everything here re-exports those. The few declared below are for
// commands and events the UI needs that the generated contract does not have yet (each says
// so); they move to the generated files when the Rust side adds them.

export type {
  AppSettings,
  AudioDevice,
  Backend as BackendKind,
  BackendFeatures,
  BackendForm,
  CallPhase,
  CallState,
  ClientError,
  ClientState,
  ConnectionQuality,
  DiscourseAuthStarted,
  Encryption,
  ErrorCode,
  JsonValue,
  Levels,
  LinkedRoom,
  LocalState,
  ModerationAction,
  ModerationOption,
  Notice,
  ParticipantState,
  ProfileInput,
  ProfileSummary,
  LocalShare,
  RoomEntry,
  ShareRect,
  ShareSound,
  ShareTarget,
  ShortcutSupport,
  Shortcuts,
  StateUpdate,
  TransmitChoice,
  UpdateStatus,
} from './generated/bindings';
export type { CommandName, Commands } from './generated/commands';
export { COMMAND_NAMES, EVENT_NAMES } from './generated/commands';

// ---- Not in the generated contract yet (requested from the Rust side) ------------------------

/// Commands beyond the generated set (none now), in the generated `Commands` shape.
export type PendingCommands = Record<never, never>;

/// `deep-link-opened` (payload: the URL) is emitted by the shell (`src-tauri/src/links.rs`) and
/// declared in `crates/core/src/client/ipc.rs`; the committed bindings predate it.
export const PENDING_EVENT_NAMES = { deepLinkOpened: 'deep-link-opened' } as const;
