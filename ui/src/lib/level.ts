// Audio levels as the UI draws them. The shell reports dBFS (`SessionEvent::Levels`: our
// microphone as RMS, each remote participant as playback peak after their volume).

import type { ClientState, Levels } from './types';

/// The quietest level the meters and rings show; anything below reads as silence.
export const FLOOR_DBFS = -60;
/// A participant whose playback peak is at or above this is drawn as speaking. Room tone and
/// comfort noise on a silent track peak well below it; speech peaks around −30…−6 dBFS.
export const SPEAKING_DBFS = -45;

/// `dbfs` mapped onto 0 (floor or below) … 1 (full scale).
export function levelFraction(dbfs: number | undefined): number {
  if (dbfs === undefined || !Number.isFinite(dbfs)) return 0;
  return Math.min(1, Math.max(0, (dbfs - FLOOR_DBFS) / -FLOOR_DBFS));
}

export function isSpeaking(dbfs: number | undefined): boolean {
  return dbfs !== undefined && Number.isFinite(dbfs) && dbfs >= SPEAKING_DBFS;
}

/// Initials for an avatar placeholder: first letters of the first two words, or the first two
/// characters of a one-word name (whole code points, so emoji and accents survive).
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter((word) => word.length > 0);
  if (words.length === 0) return '?';
  const first = (word: string) => Array.from(word)[0] ?? '';
  const letters = words.length === 1 ? Array.from(words[0] ?? '').slice(0, 2).join('') : first(words[0] ?? '') + first(words[1] ?? '');
  return letters.toUpperCase();
}

/// The levels a whole state holds, as `next_state` sends them on their own.
export function levelsOf(state: ClientState): Levels {
  return {
    inputDbfs: state.local.inputLevelDbfs,
    participants: state.call?.participants.map((participant) => participant.levelDbfs) ?? [],
  };
}
