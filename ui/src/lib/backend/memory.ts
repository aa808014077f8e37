// An in-memory backend: fake profiles, rooms and participants whose speaking levels change.
//
// Component tests drive it directly: its `calls` log is what they assert on, and `fail`,
// `setLevels`, `setSharing`, `endCall`, `postNotice`, `openDeepLink` and `setPushToTalk` set up situations. `npm run dev`
// in a plain browser uses it with `animate`, so the UI can be worked on without the Rust side.
// It keeps the contract the shell promises: failures are `{code, message}`, secrets go into a
// fake keyring and never come back out, and every change is a state snapshot, whole unless only
// the levels changed (as `next_state` answers).

import { BackendError, IDLE_STATE, type AllCommands, type ArgList, type Backend, type CommandName, type ResultOf, type Unsubscribe } from '../backend';
import { levelsOf } from '../level';
import { isCleartextRemote } from '../backends';
import type {
  AppSettings,
  AudioDevice,
  BackendFeatures,
  CallState,
  ClientError,
  ClientState,
  ModerationAction,
  ModerationOption,
  Notice,
  ParticipantState,
  ProfileSummary,
  RoomEntry,
  ShareSound,
  ShareTarget,
  ShortcutSupport,
  StateUpdate,
  UpdateStatus,
} from '../types';

export interface RecordedCall {
  command: CommandName;
  args: unknown;
}

export interface MemoryBackendOptions {
  profiles?: ProfileSummary[];
  rooms?: Record<string, RoomEntry[]>;
  features?: Record<string, BackendFeatures>;
  /// Per room id: the people already in it when the user joins.
  people?: Record<string, ParticipantState[]>;
  /// Room ids whose calls are end-to-end encrypted.
  encrypted?: string[];
  /// Per profile: the moderation the backend offers in rooms where `canManage`.
  moderation?: Record<string, ModerationOption[]>;
  /// Per profile: the room the backend believes the user is already in.
  elsewhere?: Record<string, { roomId: string; roomName: string }>;
  settings?: Partial<AppSettings>;
  devices?: AudioDevice[];
  shortcutSupport?: ShortcutSupport;
  update?: UpdateStatus;
  /// Change the participants' levels every 100 ms (for `npm run dev`).
  animate?: boolean;
  /// Start already in this call (`npm run dev` with `?join=profile/room`, for screenshots).
  joined?: { profile: string; room: string };
  /// Give viewers picture URLs (`memory-frame://<identity>`, which nothing answers: tests fire
  /// the pictures' load and error events themselves).
  frames?: boolean;
  /// Act as a shell that paints pictures itself (`Backend.paintsShares`): viewers place their
  /// pictures (`place_share`, in `callsOf`) instead of loading them.
  paints?: boolean;
}

export const DEFAULT_SETTINGS: AppSettings = {
  inputDevice: null,
  outputDevice: null,
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
  transmitMode: 'voice_activity',
  pttReleaseDelayMs: 200,
  vadThresholdDbfs: -45,
  cues: true,
  startMinimized: false,
  launchAtLogin: false,
  shortcuts: { pushToTalk: 'CommandOrControl+Shift+P', toggleMute: 'CommandOrControl+Shift+M', toggleDeafen: null },
};

/// A remote participant with quiet defaults.
export function person(identity: string, name: string, extra: Partial<ParticipantState> = {}): ParticipantState {
  return {
    identity,
    name,
    role: null,
    avatarUrl: null,
    speaking: false,
    levelDbfs: -100,
    muted: false,
    handRaised: false,
    connectionQuality: 'good',
    volume: 100,
    locallyMuted: false,
    deafened: false,
    canSpeak: extra.role !== 'listener',
    hardMuted: false,
    encryption: 'unknown',
    sharing: false,
    shareSize: null,
    ...extra,
  };
}

export function room(id: string, name: string, extra: Partial<RoomEntry> = {}): RoomEntry {
  return { id, name, description: null, stage: false, participants: null, maxParticipants: null, canManage: false, ...extra };
}

export function option(action: ModerationAction): ModerationOption {
  return { action, destructive: action === 'kick' || action === 'ban' || action === 'hard_mute' };
}

const DEMO_PROFILES: ProfileSummary[] = [
  { name: 'local', backend: 'livekit', server: 'ws://127.0.0.1:7880', fields: {}, insecure: false },
  { name: 'forum', backend: 'audioroom', server: 'https://forum.example.org', fields: {}, insecure: false },
  { name: 'matrix', backend: 'lk-jwt', server: 'https://matrix.example.org', fields: {}, insecure: false },
];

const DEMO_ROOMS: Record<string, RoomEntry[]> = {
  local: [
    room('lounge', 'Lounge', { participants: 3, canManage: true }),
    room('standup', 'Standup', { participants: 0 }),
  ],
  forum: [
    room('town-hall', 'Town hall', { stage: true, participants: 5, canManage: true, description: 'Monthly community call' }),
    room('full', 'Small room', { participants: 2, maxParticipants: 2 }),
  ],
  matrix: [],
};

const DEMO_SHARE_TARGETS: ShareTarget[] = [
  { id: 'screen:0', kind: 'screen', name: '0', width: 1920, height: 1080, thumbnail: null },
  { id: 'window:0x1a00007', kind: 'window', name: 'Editor', width: 1280, height: 800, thumbnail: null },
];

const DEMO_SHARE_SOUNDS: ShareSound[] = [
  { id: '#12', app: 'Firefox', title: 'Trailer — YouTube' },
  { id: '#15', app: 'Game', title: '' },
];

const DEMO_FEATURES: Record<string, BackendFeatures> = {
  local: { listRooms: true, raiseHand: false },
  forum: { listRooms: true, raiseHand: true },
  matrix: { listRooms: false, raiseHand: false },
};

const DEMO_PEOPLE: Record<string, ParticipantState[]> = {
  lounge: [
    person('alice', 'Alice', { role: 'moderator' }),
    person('bob', 'Bob Marley', { muted: true }),
    person('carol', 'Carol', { connectionQuality: 'poor' }),
  ],
  'town-hall': [
    person('dana', 'Dana', { role: 'moderator' }),
    person('erin', 'Erin', { role: 'speaker', deafened: true }),
    person('hana', 'Hana', { role: 'speaker', hardMuted: true, canSpeak: false }),
    person('frank', 'Frank', { role: 'listener', handRaised: true }),
    person('gus', 'Gus', { role: 'listener' }),
  ],
};

const DEMO_MODERATION: Record<string, ModerationOption[]> = {
  local: (['mute', 'kick', 'ban', 'stop_share'] as const).map(option),
  forum: (['mute', 'hard_mute', 'restore', 'kick', 'ban', 'invite_to_speak', 'move_to_audience', 'make_moderator'] as const).map(option),
};

type Handlers = { [K in CommandName]: (args: AllCommands[K]['args']) => Promise<AllCommands[K]['result']> };

export class MemoryBackend implements Backend {
  /// Every command received, in order, with its arguments (secrets included: tests check them).
  readonly calls: RecordedCall[] = [];
  /// The fake OS keyring: profile → entry name → value.
  readonly keyring = new Map<string, Record<string, string>>();
  /// Whether the microphone test is running.
  micTest = false;

  private profiles: ProfileSummary[];
  private rooms: Record<string, RoomEntry[]>;
  private features: Record<string, BackendFeatures>;
  private people: Record<string, ParticipantState[]>;
  private encrypted: string[];
  private moderation: Record<string, ModerationOption[]>;
  private elsewhere: Record<string, { roomId: string; roomName: string }>;
  private frames: boolean;
  readonly paintsShares: boolean;
  private settings: AppSettings;
  private devices: AudioDevice[];
  private support: ShortcutSupport;
  private update: UpdateStatus;
  private failures = new Map<CommandName, ClientError>();
  private state: ClientState = structuredClone(IDLE_STATE);
  private stateListeners = new Set<(update: StateUpdate) => void>();
  /// `next_state`'s numbering, as the shell's: 1 for the first snapshot, then one per change.
  private revision = 1;
  /// The revision from which on the state differed in levels only.
  private structure = 1;
  private revisionWaiters: (() => void)[] = [];
  private noticeListeners = new Set<(notice: Notice) => void>();
  private linkListeners = new Set<(url: string) => void>();
  private pendingAuth = new Map<string, string>();
  private animation: ReturnType<typeof setInterval> | null = null;

  constructor(options: MemoryBackendOptions = {}) {
    this.profiles = structuredClone(options.profiles ?? DEMO_PROFILES);
    this.rooms = structuredClone(options.rooms ?? DEMO_ROOMS);
    this.features = structuredClone(options.features ?? DEMO_FEATURES);
    this.people = structuredClone(options.people ?? DEMO_PEOPLE);
    this.encrypted = options.encrypted ?? [];
    this.moderation = structuredClone(options.moderation ?? DEMO_MODERATION);
    this.elsewhere = structuredClone(options.elsewhere ?? {});
    this.frames = options.frames ?? false;
    this.paintsShares = options.paints ?? false;
    this.settings = { ...DEFAULT_SETTINGS, ...options.settings };
    this.state.local.transmitMode = this.settings.transmitMode;
    this.devices = options.devices ?? [
      { id: 'builtin-mic', name: 'Built-in microphone', input: true, isDefault: true },
      { id: 'usb-mic', name: 'USB microphone', input: true, isDefault: false },
      { id: 'builtin-speakers', name: 'Built-in speakers', input: false, isDefault: true },
      { id: 'headset', name: 'Headset', input: false, isDefault: false },
    ];
    this.support = options.shortcutSupport ?? { globalShortcuts: true, message: null, failed: [] };
    this.update = options.update ?? { available: false, currentVersion: '0.1.0', version: null, notes: null };
    if (options.animate) this.animation = setInterval(() => this.animateLevels(), 100);
    if (options.joined) this.connect(options.joined.profile, options.joined.room, true);
  }

  // ---- test hooks -------------------------------------------------------------------------

  /// The next call of `command` fails with `error`.
  fail(command: CommandName, error: ClientError): void {
    this.failures.set(command, error);
  }

  /// The arguments of every call of `command`, oldest first.
  callsOf(command: CommandName): unknown[] {
    return this.calls.filter((call) => call.command === command).map((call) => call.args);
  }

  /// Sets participants' playback levels (and our input level) as the audio worker reports them.
  setLevels(levels: Record<string, number>, inputDbfs?: number): void {
    const call = this.state.call;
    const participants = call?.participants.map((p) => (p.identity in levels ? { ...p, levelDbfs: levels[p.identity] ?? p.levelDbfs } : p));
    this.publish({
      ...this.state,
      call: call && participants ? { ...call, participants } : call,
      local: { ...this.state.local, inputLevelDbfs: inputDbfs ?? this.state.local.inputLevelDbfs },
    });
  }

  /// Someone starts or stops sharing their screen.
  setSharing(identity: string, sharing: boolean): void {
    this.updateParticipant(identity, { sharing });
    // As in the core: a share that ends closes its viewer.
    const call = this.state.call;
    if (!sharing && call?.watching.includes(identity)) {
      const others = (list: string[]): string[] => list.filter((watched) => watched !== identity);
      this.publish({ ...this.state, call: { ...call, watching: others(call.watching), poppedOut: others(call.poppedOut) } });
    }
  }

  /// A watched share arrives at this size (the layer the server sends).
  setShareSize(identity: string, width: number, height: number): void {
    this.updateParticipant(identity, { shareSize: [width, height] });
  }

  /// The server grants or revokes our right to publish (invited to speak, moved to the audience).
  setCanSpeak(canSpeak: boolean): void {
    const call = this.state.call;
    this.publish({ ...this.state, call: call ? { ...call, canSpeak } : call });
  }

  /// The backend ends the call (a moderator kicked or banned the user, the room closed).
  endCall(code: ClientError['code'], message: string): void {
    this.publish({ ...this.state, call: null });
    this.notify({ kind: 'call_ended', code, message });
  }

  /// The shell posts a one-off notice (a followed room went live, a device changed).
  postNotice(notice: Notice): void {
    this.notify(notice);
  }

  /// A `parley://join/<profile>/<room>` link was opened: the shell shows the room and waits.
  openJoinLink(profile: string, room: string): void {
    this.publish({ ...this.state, link: { profile, room } });
  }

  /// The OS handed the app a `parley://` URL the shell passes on to the window.
  openDeepLink(url: string): void {
    for (const listener of this.linkListeners) listener(url);
  }

  /// The push-to-talk key went down or up (a global shortcut, the tray, `parley ctl`).
  setPushToTalk(held: boolean): void {
    this.publish({ ...this.state, local: { ...this.state.local, pttHeld: held, transmitting: held && !this.state.local.muted } });
  }

  dispose(): void {
    if (this.animation !== null) clearInterval(this.animation);
    this.animation = null;
  }

  // ---- Backend ----------------------------------------------------------------------------

  async invoke<K extends CommandName>(command: K, ...args: ArgList<K>): Promise<ResultOf<K>> {
    // Through JSON, as over IPC: what arrives is plain data (not the caller's reactive proxies),
    // and anything that would not survive serialization fails here too.
    const given = JSON.parse(JSON.stringify(args[0] ?? {})) as AllCommands[K]['args'];
    this.calls.push({ command, args: JSON.parse(JSON.stringify(given)) });
    const failure = this.failures.get(command);
    if (failure) {
      this.failures.delete(command);
      throw new BackendError(failure);
    }
    const handler = this.handlers[command] as (args: AllCommands[K]['args']) => Promise<ResultOf<K>>;
    return handler(given);
  }

  async onStateChanged(listener: (update: StateUpdate) => void): Promise<Unsubscribe> {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  async onNotice(listener: (notice: Notice) => void): Promise<Unsubscribe> {
    this.noticeListeners.add(listener);
    return () => this.noticeListeners.delete(listener);
  }

  async onDeepLink(listener: (url: string) => void): Promise<Unsubscribe> {
    this.linkListeners.add(listener);
    return () => this.linkListeners.delete(listener);
  }

  /// No pictures here (a viewer shows that it waits for the share), unless a test drives them.
  frameUrl(identity: string): string | null {
    return this.frames ? `memory-frame://${encodeURIComponent(identity)}` : null;
  }

  // ---- commands ---------------------------------------------------------------------------

  private readonly handlers: Handlers = {
    get_state: async () => structuredClone(this.state),
    next_state: async ({ after }) => {
      if (after === this.revision) await new Promise<void>((resolve) => this.revisionWaiters.push(resolve));
      return this.updateAfter(after);
    },
    get_settings: async () => structuredClone(this.settings),
    update_settings: async ({ settings }) => {
      this.settings = structuredClone(settings);
      this.publish({ ...this.state, local: { ...this.state.local, transmitMode: settings.transmitMode } });
      return structuredClone(this.settings);
    },
    list_backends: async () => [],
    list_profiles: async () => structuredClone(this.profiles),
    add_profile: async ({ profile }) => {
      if (!profile.replace && this.profiles.some((p) => p.name === profile.name)) {
        throw new BackendError({ code: 'invalid_input', message: `a profile named "${profile.name}" already exists` });
      }
      const fields = profile.fields;
      const server = String(fields.url ?? fields.homeserver_url ?? fields.relay_url ?? fields.url_template ?? '');
      // As `control_plane::transport::check_server` refuses it.
      if (isCleartextRemote(server) && !profile.insecure) {
        throw new BackendError({ code: 'invalid_input', message: `${server} is unencrypted; save the profile with --insecure if you accept that risk` });
      }
      const summary: ProfileSummary = {
        name: profile.name,
        backend: profile.backend,
        server,
        fields: structuredClone(fields),
        insecure: profile.insecure,
      };
      this.profiles = [...this.profiles.filter((p) => p.name !== profile.name), summary];
      const secrets = Object.fromEntries(Object.entries(profile.secrets).filter((entry): entry is [string, string] => entry[1] !== undefined));
      if (Object.keys(secrets).length > 0) this.keyring.set(profile.name, { ...this.keyring.get(profile.name), ...secrets });
      this.rooms[profile.name] ??= [];
      this.features[profile.name] ??= { listRooms: profile.backend === 'livekit' || profile.backend === 'audioroom', raiseHand: false };
      return structuredClone(summary);
    },
    remove_profile: async ({ name }) => {
      this.profiles = this.profiles.filter((p) => p.name !== name);
      this.keyring.delete(name);
      return null;
    },
    list_rooms: async ({ profile }) => {
      const rooms = this.rooms[profile];
      if (!rooms) throw new BackendError({ code: 'not_found', message: `there is no profile named ${profile}` });
      if (this.features[profile]?.listRooms === false) {
        throw new BackendError({ code: 'unsupported', message: 'this backend does not list rooms' });
      }
      return structuredClone(rooms);
    },
    get_backend_features: async ({ profile }) => {
      const features = this.features[profile];
      if (!features) throw new BackendError({ code: 'not_found', message: `there is no profile named ${profile}` });
      return structuredClone(features);
    },
    list_devices: async () => structuredClone(this.devices),
    join_room: async ({ profile, room: roomId, switchRooms }) => {
      this.publish({ ...this.state, call: this.joiningCall(profile, roomId), link: null });
      try {
        this.connect(profile, roomId, switchRooms);
      } catch (error) {
        const failed = error as BackendError;
        const call = this.state.call;
        if (call) this.publish({ ...this.state, call: { ...call, phase: { phase: 'failed', code: failed.code, message: failed.message } } });
        throw failed;
      }
      return null;
    },
    leave_room: async () => {
      this.publish({ ...this.state, call: null });
      return null;
    },
    set_muted: async ({ muted }) => this.setLocal({ muted, transmitting: this.state.local.transmitting && !muted }),
    toggle_mute: async () => this.setLocal({ muted: !this.state.local.muted }),
    set_deafened: async ({ deafened }) => this.setLocal({ deafened }),
    toggle_deafen: async () => this.setLocal({ deafened: !this.state.local.deafened }),
    push_to_talk: async ({ pressed }) => {
      this.setPushToTalk(pressed);
      return null;
    },
    set_volume: async ({ identity, percent }) => this.updateParticipant(identity, { volume: percent }),
    set_local_mute: async ({ identity, muted }) => this.updateParticipant(identity, { locallyMuted: muted }),
    dismiss_link: async () => {
      this.publish({ ...this.state, link: null });
      return null;
    },
    allow_unencrypted: async ({ identity }) => this.updateParticipant(identity, { encryption: 'allowed_unencrypted' }),
    list_share_targets: async () => structuredClone(DEMO_SHARE_TARGETS),
    list_share_sounds: async () => structuredClone(DEMO_SHARE_SOUNDS),
    start_share: async ({ target, quality, priority, sound }) => {
      const call = this.requireCall();
      const found = DEMO_SHARE_TARGETS.find((candidate) => candidate.id === target);
      if (!found) throw new BackendError({ code: 'not_found', message: `${target} is no longer there to share (closed?); pick another` });
      if (!call.canShare) throw new BackendError({ code: 'forbidden', message: 'not allowed: this room does not allow screen share' });
      if (call.sharing) throw new BackendError({ code: 'invalid_input', message: 'a screen share is already running; stop it first' });
      const [width, height] = quality === '720p30' ? [1280, 720] : [found.width, found.height];
      const playing = DEMO_SHARE_SOUNDS.find((candidate) => candidate.id === sound)?.app ?? null;
      this.publish({
        ...this.state,
        call: { ...call, sharing: { target: found.name, quality, priority, width, height, sound: playing } },
      });
      return null;
    },
    stop_share: async () => {
      const call = this.requireCall();
      this.publish({ ...this.state, call: { ...call, sharing: null } });
      return null;
    },
    watch_share: async ({ identity }) => {
      const call = this.requireCall();
      if (!call.participants.some((p) => p.identity === identity && p.sharing)) {
        throw new BackendError({ code: 'invalid_input', message: `${identity} is not sharing their screen` });
      }
      if (!call.watching.includes(identity)) this.publish({ ...this.state, call: { ...call, watching: [...call.watching, identity] } });
      return null;
    },
    unwatch_share: async ({ identity }) => {
      const call = this.requireCall();
      const others = (list: string[]): string[] => list.filter((watched) => watched !== identity);
      this.publish({ ...this.state, call: { ...call, watching: others(call.watching), poppedOut: others(call.poppedOut) } });
      return null;
    },
    pop_out_share: async ({ identity }) => {
      const call = this.requireCall();
      if (!call.watching.includes(identity)) throw new BackendError({ code: 'invalid_input', message: `${identity}'s screen is not being watched` });
      if (!call.poppedOut.includes(identity)) this.publish({ ...this.state, call: { ...call, poppedOut: [...call.poppedOut, identity] } });
      return null;
    },
    fit_share: async () => {
      this.requireCall();
      return null;
    },
    place_share: async () => null,
    moderate_participant: async ({ identity, action }) => {
      const call = this.requireCall();
      if (!call.moderation.some((offered) => offered.action === action)) {
        throw new BackendError({ code: 'forbidden', message: `you may not ${action.replace(/_/g, ' ')} here` });
      }
      if (action === 'kick' || action === 'ban') {
        this.publish({ ...this.state, call: { ...call, participants: call.participants.filter((p) => p.identity !== identity) } });
        return null;
      }
      const effects: Partial<Record<ModerationAction, Partial<ParticipantState>>> = {
        mute: { muted: true },
        unmute: { muted: false },
        hard_mute: { hardMuted: true, canSpeak: false },
        restore: { hardMuted: false, canSpeak: true },
        invite_to_speak: { role: 'speaker', handRaised: false, canSpeak: true },
        move_to_audience: { role: 'listener', canSpeak: false },
        make_moderator: { role: 'moderator' },
        stop_share: { sharing: false },
      };
      return this.updateParticipant(identity, effects[action] ?? {});
    },
    set_hand_raised: async ({ raised }) => {
      const call = this.requireCall();
      this.publish({ ...this.state, call: { ...call, handRaised: raised } });
      return null;
    },
    get_shortcut_support: async () => structuredClone(this.support),
    check_for_updates: async () => structuredClone(this.update),
    install_update: async () => {
      if (!this.update.available) throw new BackendError({ code: 'invalid_input', message: 'there is no update to install' });
      return null;
    },
    begin_discourse_auth: async ({ profile, url }) => {
      const clientId = `client-${profile}`;
      this.pendingAuth.set(profile, clientId);
      return { clientId, authorizeUrl: `${url}/user-api-key/new?client_id=${clientId}` };
    },
    complete_discourse_auth: async ({ profile, payload }) => {
      if (!this.pendingAuth.has(profile)) throw new BackendError({ code: 'invalid_input', message: 'start the sign-in first' });
      if (payload.trim().length < 16) {
        throw new BackendError({ code: 'malformed_response', message: 'the text is not a key payload from the forum' });
      }
      this.keyring.set(profile, { 'user-api-key': `decrypted-${payload.slice(0, 4)}` });
      return null;
    },
    start_mic_test: async () => {
      this.micTest = true;
      return null;
    },
    stop_mic_test: async () => {
      this.micTest = false;
      return null;
    },
  };

  // ---- internals --------------------------------------------------------------------------

  private joiningCall(profile: string, roomId: string): CallState {
    return {
      profile,
      roomId,
      roomName: roomId,
      phase: { phase: 'joining' },
      identity: null,
      role: null,
      handRaised: false,
      canRaiseHand: false,
      canSpeak: true,
      moderation: [],
      localQuality: 'unknown',
      encrypted: false,
      participants: [],
      canShare: false,
      sharing: null,
      watching: [],
      poppedOut: [],
      bandwidth: null,
    };
  }

  /// What the real client does between `joining` and `connected`, minus the network.
  private connect(profile: string, roomId: string, switchRooms: boolean): void {
    const summary = this.rooms[profile]?.find((candidate) => candidate.id === roomId);
    const features = this.features[profile];
    if (!features) throw new BackendError({ code: 'not_found', message: `there is no profile named ${profile}` });
    const entry = summary ?? room(roomId, roomId);
    const other = this.elsewhere[profile];
    if (other && other.roomId !== roomId) {
      if (!switchRooms) {
        throw new BackendError({
          code: 'in_another_room',
          message: `you are already in another room ("${other.roomName}", id ${other.roomId}); leave it to join this one`,
        });
      }
      delete this.elsewhere[profile];
    }
    if (entry.maxParticipants !== null && (entry.participants ?? 0) >= entry.maxParticipants) {
      throw new BackendError({ code: 'room_full', message: 'the room is full' });
    }
    this.publish({
      ...this.state,
      call: {
        profile,
        roomId: entry.id,
        roomName: entry.name,
        phase: { phase: 'connected' },
        identity: 'me',
        role: entry.stage ? 'listener' : null,
        handRaised: false,
        canRaiseHand: entry.stage && features.raiseHand,
        // A stage room's listener may not publish until invited to speak.
        canSpeak: !entry.stage,
        moderation: entry.canManage ? structuredClone(this.moderation[profile] ?? []) : [],
        localQuality: 'excellent',
        encrypted: this.encrypted.includes(entry.id),
        participants: structuredClone(this.people[entry.id] ?? []),
        // A stage room's listener may not share either.
        canShare: !entry.stage,
        sharing: null,
        watching: [],
        poppedOut: [],
        bandwidth: null,
      },
    });
  }

  private requireCall(): CallState {
    const call = this.state.call;
    if (!call || call.phase.phase !== 'connected') throw new BackendError({ code: 'not_in_call', message: 'you are not in a call' });
    return call;
  }

  private setLocal(change: Partial<ClientState['local']>): null {
    this.publish({ ...this.state, local: { ...this.state.local, ...change } });
    return null;
  }

  private updateParticipant(identity: string, change: Partial<ParticipantState>): null {
    const call = this.requireCall();
    if (!call.participants.some((p) => p.identity === identity)) {
      throw new BackendError({ code: 'not_found', message: `${identity} is not in the call` });
    }
    const participants = call.participants.map((p) => (p.identity === identity ? { ...p, ...change } : p));
    this.publish({ ...this.state, call: { ...call, participants } });
    return null;
  }

  private publish(state: ClientState): void {
    const before = this.revision;
    if (withoutLevels(state) !== withoutLevels(this.state)) this.structure = before + 1;
    this.state = state;
    this.revision += 1;
    for (const wake of this.revisionWaiters.splice(0)) wake();
    for (const listener of this.stateListeners) listener(this.updateAfter(before));
  }

  /// The current snapshot for a window holding the one at `after`: without the whole state
  /// when that one differs from it in levels only.
  private updateAfter(after: number): StateUpdate {
    const current = after !== 0 && after >= this.structure;
    return { revision: this.revision, state: current ? null : structuredClone(this.state), levels: levelsOf(this.state) };
  }

  private notify(notice: Notice): void {
    for (const listener of this.noticeListeners) listener(structuredClone(notice));
  }

  /// Speech-like levels: each remote participant talks in bursts; the rest is near silence.
  private animateLevels(): void {
    const now = Date.now() / 1000;
    const levels: Record<string, number> = {};
    this.state.call?.participants.forEach((p, index) => {
      const burst = Math.sin(now * 0.7 + index * 2.1);
      const syllables = Math.abs(Math.sin(now * 9 + index));
      levels[p.identity] = burst > 0.3 && !p.muted ? -40 + 32 * syllables : -80;
    });
    const live = this.state.call !== null || this.micTest;
    const input = live ? -50 + 30 * Math.abs(Math.sin(now * 3)) : -100;
    this.setLevels(levels, input);
    // The transmit gate as the audio worker would run it (push-to-talk follows the key).
    const mode = this.settings.transmitMode;
    if (mode !== 'push_to_talk') {
      const open = !this.state.local.muted && (mode === 'open_mic' || input >= this.settings.vadThresholdDbfs);
      if (open !== this.state.local.transmitting) this.setLocal({ transmitting: open });
    }
  }
}

/// The state with its levels left out, to tell a change of levels from any other.
function withoutLevels(state: ClientState): string {
  const call = state.call && { ...state.call, participants: state.call.participants.map((p) => ({ ...p, levelDbfs: 0 })) };
  return JSON.stringify({ ...state, call, local: { ...state.local, inputLevelDbfs: 0 } });
}
