// One shape for every tile in the room, ourselves included: the state keeps us apart
// (`ClientState.local` + the call's identity and role) from everyone else (`participants`).

import { isSpeaking } from './level';
import { isSpeaker } from './moderation';
import type { ClientState, ConnectionQuality, Encryption, ParticipantState } from './types';

export interface Tile {
  identity: string;
  name: string;
  role: string | null;
  avatarUrl: string | null;
  isLocal: boolean;
  /// Heard by others (us: transmitting, not muted) or by us (them: not muted for us).
  audible: boolean;
  /// LiveKit counts them among the active speakers (never us: our own level decides).
  activeSpeaker: boolean;
  muted: boolean;
  /// Ours, and others' where the backend reports it.
  deafened: boolean;
  /// A moderator took away their right to speak.
  hardMuted: boolean;
  handRaised: boolean;
  connectionQuality: ConnectionQuality;
  volume: number;
  locallyMuted: boolean;
  /// End-to-end encryption of their media (others; ours is the call's).
  encryption: Encryption;
  /// They share their screen (the "Live" mark; never us for now).
  sharing: boolean;
  onStage: boolean;
  /// The remote participant this tile shows (for the menu); `null` for ourselves.
  remote: ParticipantState | null;
}

/// Whether to draw the speaking ring at this level: LiveKit's active-speaker flag or the level
/// itself (the tiles come from the state, the levels from their own, faster stream).
export function tileSpeaking(tile: Tile, levelDbfs: number): boolean {
  return tile.audible && (tile.activeSpeaker || isSpeaking(levelDbfs));
}

export function remoteTile(participant: ParticipantState): Tile {
  return {
    identity: participant.identity,
    name: participant.name,
    role: participant.role,
    avatarUrl: participant.avatarUrl,
    isLocal: false,
    // Someone we muted for ourselves is not heard, so not drawn as speaking.
    audible: !participant.locallyMuted && participant.encryption !== 'not_encrypted',
    activeSpeaker: participant.speaking,
    muted: participant.muted,
    deafened: participant.deafened,
    hardMuted: participant.hardMuted,
    handRaised: participant.handRaised,
    connectionQuality: participant.connectionQuality,
    volume: participant.volume,
    locallyMuted: participant.locallyMuted,
    encryption: participant.encryption,
    sharing: participant.sharing,
    onStage: isSpeaker(participant.role),
    remote: participant,
  };
}

export function localTile(state: ClientState): Tile | null {
  const call = state.call;
  if (!call) return null;
  const { local } = state;
  return {
    identity: call.identity ?? 'you',
    name: 'You',
    role: call.role,
    avatarUrl: null,
    isLocal: true,
    audible: local.transmitting && !local.muted,
    activeSpeaker: false,
    muted: local.muted,
    deafened: local.deafened,
    // A listener cannot speak either, but nobody took anything away from them.
    hardMuted: !call.canSpeak && call.role !== null && isSpeaker(call.role),
    handRaised: call.handRaised,
    connectionQuality: call.localQuality,
    volume: 100,
    locallyMuted: false,
    encryption: 'unknown',
    // Our own share: the Live mark on our tile (not a button: we do not watch ourselves).
    sharing: call.sharing !== null,
    onStage: isSpeaker(call.role),
    remote: null,
  };
}
