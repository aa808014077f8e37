// The app's state on the UI side: what the backend last said (profiles, rooms, the client
// state snapshot, settings) plus what is on screen (selected profile, open view, dialogs).
// Everything that changes the call goes through the backend; this model mirrors its answers
// and events, so the shell stays the one source of truth.

import { IDLE_STATE, toBackendError, type Backend, type Unsubscribe } from './backend';
import { levelsOf } from './level';
import type {
  AppSettings,
  BackendFeatures,
  ClientError,
  ClientState,
  Levels,
  ModerationAction,
  ProfileSummary,
  RoomEntry,
  ShareRect,
  ShareSound,
  ShareTarget,
  ShortcutSupport,
} from './types';

export type View = 'rooms' | 'add-server';

/// A failed join or an ended call, shown as a dialog; `room` is what to retry.
export interface Problem {
  error: ClientError;
  profile: string;
  room: string;
  roomName: string;
}

const LIVE_PHASES = new Set(['joining', 'connecting', 'connected', 'reconnecting']);

export class AppModel {
  /// Replaced as a whole with each snapshot (never mutated), so not deeply reactive: a deep
  /// proxy over every snapshot, ten a second in a call, was garbage for nothing.
  state = $state.raw<ClientState>(structuredClone(IDLE_STATE));
  /// The meters, apart from `state`: they change ten times a second in a call, and only what
  /// draws a level should redraw then (the level fields inside `state` are not kept current).
  levels = $state.raw<Levels>(levelsOf(IDLE_STATE));
  profiles = $state<ProfileSummary[]>([]);
  profilesLoaded = $state(false);
  selectedProfile = $state<string | null>(null);
  features = $state<BackendFeatures | null>(null);
  rooms = $state<RoomEntry[]>([]);
  roomsLoading = $state(false);
  roomsError = $state<ClientError | null>(null);
  view = $state<View>('rooms');
  settingsOpen = $state(false);
  /// The room a join is in flight for.
  joining = $state<string | null>(null);
  problem = $state<Problem | null>(null);
  /// A short message for failures that need no dialog (a refused moderation action, …) and
  /// for one-off notices (a device changed, a followed room went live).
  notice = $state<string | null>(null);
  settings = $state<AppSettings | null>(null);
  shortcutSupport = $state<ShortcutSupport | null>(null);

  private readonly backend: Backend;
  private unsubscribers: Unsubscribe[] = [];
  /// The last call the state showed: a notice that it ended may come after the state dropped it.
  private lastCall: { profile: string; roomId: string; roomName: string } | null = null;
  /// Each participant's place in `levels.participants` (their place in `state`). Replaced
  /// with `state`, never mutated, and read together with `levels`, which is reactive.
  private levelIndex: ReadonlyMap<string, number> = new Map(); // eslint-disable-line svelte/prefer-svelte-reactivity

  constructor(backend: Backend) {
    this.backend = backend;
  }

  get call() {
    return this.state.call;
  }

  /// Our microphone's level, dBFS.
  get inputLevel(): number {
    return this.levels.inputDbfs;
  }

  /// A remote participant's playback level, dBFS (silence for someone not in the call).
  levelOf(identity: string): number {
    const index = this.levelIndex.get(identity);
    return (index === undefined ? undefined : this.levels.participants[index]) ?? IDLE_STATE.local.inputLevelDbfs;
  }

  /// A call that is under way (not failed, not absent).
  get inCall(): boolean {
    return this.state.call !== null && LIVE_PHASES.has(this.state.call.phase.phase);
  }

  /// Stage rooms split speakers from listeners: the backend lets us raise a hand there, or
  /// the room list said so.
  get stage(): boolean {
    const call = this.state.call;
    if (!call) return false;
    return call.canRaiseHand || this.rooms.some((room) => room.id === call.roomId && room.stage);
  }

  /// Subscribes to the backend's events and loads the first screen. Call once.
  async start(): Promise<void> {
    this.unsubscribers.push(
      await this.backend.onStateChanged((update) => {
        if (update.state) this.applyState(update.state);
        this.levels = update.levels;
      }),
      await this.backend.onNotice((notice) => {
        switch (notice.kind) {
          case 'call_ended':
            this.problem = {
              error: { code: notice.code, message: notice.message },
              profile: this.lastCall?.profile ?? this.selectedProfile ?? '',
              room: this.lastCall?.roomId ?? '',
              roomName: this.lastCall?.roomName ?? '',
            };
            break;
          case 'room_went_live':
            this.notice = `${notice.roomName} is live on ${notice.profile}.`;
            break;
          case 'device_changed':
          case 'warning':
            this.notice = notice.message;
            break;
        }
      }),
    );
    try {
      const state = await this.backend.invoke('get_state');
      this.applyState(state);
      this.levels = levelsOf(state);
    } catch (error) {
      // The window still opens (servers, settings); the next snapshot fills the call in.
      this.notice = toBackendError(error).message;
    }
    await Promise.all([this.loadProfiles(), this.loadSettings()]);
  }

  /// For a screen share's own window: follows the state only (no servers, settings or notices).
  async followState(): Promise<void> {
    this.unsubscribers.push(
      await this.backend.onStateChanged((update) => {
        if (update.state) this.state = update.state;
      }),
    );
    try {
      this.state = await this.backend.invoke('get_state');
    } catch (error) {
      this.notice = toBackendError(error).message;
    }
  }

  private applyState(state: ClientState): void {
    const before = this.state.call;
    this.state = state;
    const call = state.call;
    // eslint-disable-next-line svelte/prefer-svelte-reactivity -- replaced whole, see the field
    this.levelIndex = new Map(call?.participants.map((participant, index) => [participant.identity, index]));
    if (call) this.lastCall = { profile: call.profile, roomId: call.roomId, roomName: call.roomName };
    // Joining changes the list (a self-hosted LiveKit creates the room on first join; counts
    // change): refresh it once we are in, however the join started (list, link, another app).
    const arrived =
      call?.phase.phase === 'connected' && (before?.phase.phase !== 'connected' || before.roomId !== call.roomId);
    if (arrived && call.profile === this.selectedProfile) void this.loadRooms();
  }

  stop(): void {
    for (const unsubscribe of this.unsubscribers) unsubscribe();
    this.unsubscribers = [];
  }

  async loadProfiles(): Promise<void> {
    try {
      this.profiles = await this.backend.invoke('list_profiles');
    } catch (error) {
      this.notice = toBackendError(error).message;
    }
    this.profilesLoaded = true;
    if (this.profiles.length === 0) {
      this.view = 'add-server';
      this.selectedProfile = null;
      return;
    }
    const keep = this.profiles.some((profile) => profile.name === this.selectedProfile);
    if (keep) return;
    // A window opened during a call shows the call's server; otherwise the first one.
    const inCall = this.profiles.find((profile) => profile.name === this.state.call?.profile);
    const first = inCall ?? this.profiles[0];
    if (first) await this.selectProfile(first.name);
  }

  async loadSettings(): Promise<void> {
    try {
      const [settings, support] = await Promise.all([
        this.backend.invoke('get_settings'),
        this.backend.invoke('get_shortcut_support'),
      ]);
      this.settings = settings;
      this.shortcutSupport = support;
    } catch (error) {
      this.notice = toBackendError(error).message;
    }
  }

  /// Asks again how the shortcuts are bound: on Wayland the desktop's portal answers a moment
  /// after the keys were set.
  async refreshShortcutSupport(): Promise<void> {
    try {
      this.shortcutSupport = await this.backend.invoke('get_shortcut_support');
    } catch (error) {
      this.notice = toBackendError(error).message;
    }
  }

  /// Sends the whole settings object; the backend answers with what it kept.
  async saveSettings(settings: AppSettings): Promise<void> {
    try {
      this.settings = await this.backend.invoke('update_settings', { settings });
      this.notice = null;
      void this.refreshShortcutSupport();
    } catch (error) {
      this.notice = toBackendError(error).message;
    }
  }

  async selectProfile(name: string): Promise<void> {
    this.selectedProfile = name;
    this.view = 'rooms';
    this.rooms = [];
    this.features = null;
    try {
      const features = await this.backend.invoke('get_backend_features', { profile: name });
      if (this.selectedProfile === name) this.features = features;
    } catch (error) {
      if (this.selectedProfile === name) this.roomsError = toBackendError(error).toClientError();
      return;
    }
    await this.loadRooms();
  }

  async loadRooms(): Promise<void> {
    const profile = this.selectedProfile;
    if (profile === null) return;
    this.roomsError = null;
    if (this.features && !this.features.listRooms) return;
    this.roomsLoading = true;
    try {
      const rooms = await this.backend.invoke('list_rooms', { profile });
      // An answer for a profile the user has since left must not overwrite the list.
      if (this.selectedProfile === profile) this.rooms = rooms;
    } catch (error) {
      if (this.selectedProfile === profile) {
        this.rooms = [];
        this.roomsError = toBackendError(error).toClientError();
      }
    } finally {
      this.roomsLoading = false;
    }
  }

  async profileAdded(profile: ProfileSummary): Promise<void> {
    this.profiles = [...this.profiles.filter((p) => p.name !== profile.name), profile];
    await this.selectProfile(profile.name);
  }

  /// Deletes a saved server and its keyring entries.
  async removeProfile(name: string): Promise<void> {
    try {
      await this.backend.invoke('remove_profile', { name });
    } catch (error) {
      this.notice = toBackendError(error).message;
      return;
    }
    this.profiles = this.profiles.filter((profile) => profile.name !== name);
    if (this.selectedProfile === name) this.selectedProfile = null;
    await this.loadProfiles();
  }

  /// Joins `room` (an id, or a name the backend resolves) of the selected profile.
  async join(room: string, roomName = room): Promise<void> {
    const profile = this.selectedProfile;
    if (profile === null) return;
    await this.joinIn(profile, room, roomName, false);
  }

  /// Joins the room a `parley://join/…` link names (the user clicked Join in its dialog).
  async joinLink(): Promise<void> {
    const link = this.state.link;
    if (!link) return;
    if (this.selectedProfile !== link.profile && this.profiles.some((profile) => profile.name === link.profile)) {
      await this.selectProfile(link.profile);
    }
    const roomName = this.rooms.find((entry) => entry.id === link.room || entry.name === link.room)?.name ?? link.room;
    await this.joinIn(link.profile, link.room, roomName, false);
  }

  /// Declines the room a link names.
  async dismissLink(): Promise<void> {
    await this.run(() => this.backend.invoke('dismiss_link'));
  }

  /// The in-another-room dialog's one-click switch: leave that room, join this one.
  async switchRooms(): Promise<void> {
    const problem = this.problem;
    if (!problem) return;
    this.problem = null;
    await this.joinIn(problem.profile, problem.room, problem.roomName, true);
  }

  private async joinIn(profile: string, room: string, roomName: string, switchRooms: boolean): Promise<void> {
    this.joining = room;
    this.problem = null;
    try {
      await this.backend.invoke('join_room', { profile, room, switchRooms });
    } catch (error) {
      this.problem = { error: toBackendError(error).toClientError(), profile, room, roomName };
    } finally {
      this.joining = null;
    }
  }

  /// Closes the problem dialog; a failed call the state still shows is cleared with it.
  async dismissProblem(): Promise<void> {
    this.problem = null;
    if (this.state.call?.phase.phase === 'failed') await this.run(() => this.backend.invoke('leave_room'));
  }

  async leave(): Promise<void> {
    await this.run(() => this.backend.invoke('leave_room'));
  }

  async toggleMute(): Promise<void> {
    await this.run(() => this.backend.invoke('set_muted', { muted: !this.state.local.muted }));
  }

  async toggleDeafen(): Promise<void> {
    await this.run(() => this.backend.invoke('set_deafened', { deafened: !this.state.local.deafened }));
  }

  async toggleHand(): Promise<void> {
    const raised = !(this.state.call?.handRaised ?? false);
    await this.run(() => this.backend.invoke('set_hand_raised', { raised }));
  }

  /// The in-window push-to-talk (the hold button, and the key while global shortcuts do not work).
  async pushToTalk(pressed: boolean): Promise<void> {
    await this.run(() => this.backend.invoke('push_to_talk', { pressed }));
  }

  async setVolume(identity: string, percent: number): Promise<void> {
    await this.run(() => this.backend.invoke('set_volume', { identity, percent }));
  }

  async setLocalMute(identity: string, muted: boolean): Promise<void> {
    await this.run(() => this.backend.invoke('set_local_mute', { identity, muted }));
  }

  /// Plays someone whose audio is not encrypted in an encrypted call.
  async allowUnencrypted(identity: string): Promise<void> {
    await this.run(() => this.backend.invoke('allow_unencrypted', { identity }));
  }

  /// What can be shared (screens and windows, with thumbnails); the failure is shown as a notice.
  async shareTargets(): Promise<ShareTarget[]> {
    try {
      return await this.backend.invoke('list_share_targets');
    } catch (error) {
      this.notice = toBackendError(error).message;
      return [];
    }
  }

  /// The applications playing sound, whose sound may go with a share. `null` where this
  /// platform cannot share one (the picker does not offer it); the reason when it cannot now
  /// (no sound server).
  async shareSounds(): Promise<ShareSound[] | string | null> {
    try {
      return await this.backend.invoke('list_share_sounds');
    } catch (error) {
      const failure = toBackendError(error);
      return failure.code === 'unsupported' ? null : failure.message;
    }
  }

  /// Shares a screen or window (`call.sharing` shows it) at `quality`, keeping `priority`
  /// (`detail` or `motion`) when bandwidth is short, with the sound of the application `sound`
  /// names (a `ShareSound` id) or none; `false` when it could not start.
  async startShare(target: string, quality: string, priority: string, sound: string | null = null): Promise<boolean> {
    try {
      await this.backend.invoke('start_share', { target, quality, priority, sound });
      return true;
    } catch (error) {
      this.notice = toBackendError(error).message;
      return false;
    }
  }

  async stopShare(): Promise<void> {
    await this.run(() => this.backend.invoke('stop_share'));
  }

  /// Opens a viewer on someone's screen share (`call.watching` lists the open ones).
  async watchShare(identity: string): Promise<void> {
    await this.run(() => this.backend.invoke('watch_share', { identity }));
  }

  /// Closes a share's viewer: the video is no longer received.
  async unwatchShare(identity: string): Promise<void> {
    await this.run(() => this.backend.invoke('unwatch_share', { identity }));
  }

  /// Moves a share's viewer into a window of its own.
  async popOutShare(identity: string): Promise<void> {
    await this.run(() => this.backend.invoke('pop_out_share', { identity }));
  }

  /// Tells the core how large a viewer is (device pixels), for the layer that fits.
  async fitShare(identity: string, width: number, height: number): Promise<void> {
    await this.run(() => this.backend.invoke('fit_share', { identity, width, height }));
  }

  /// Tells the shell where a viewer shows a share's picture (CSS pixels in its window), or that
  /// it shows it no more (`null`), where the shell paints pictures itself.
  async placeShare(identity: string, rect: ShareRect | null): Promise<void> {
    await this.run(() => this.backend.invoke('place_share', { identity, rect }));
  }

  /// Whether the shell paints watched shares' pictures itself (`Backend.paintsShares`).
  get paintsShares(): boolean {
    return this.backend.paintsShares;
  }

  /// Where a watched share's pictures come from (`null` where there are none, e.g. in tests).
  frameUrl(identity: string): string | null {
    return this.backend.frameUrl(identity);
  }

  async moderate(identity: string, action: ModerationAction): Promise<void> {
    await this.run(() => this.backend.invoke('moderate_participant', { identity, action }));
  }

  /// Runs a command whose failure is shown as a notice (nothing to retry, no dialog).
  private async run(command: () => Promise<unknown>): Promise<void> {
    try {
      await command();
      this.notice = null;
    } catch (error) {
      this.notice = toBackendError(error).message;
    }
  }
}
