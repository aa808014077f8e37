// Which moderation actions to offer on a participant, and how to name them.
//
// The backend decides what the user may do in this room (`CallState.moderation`: the
// adapter's actions filtered by the user's role, each flagged `destructive`); this only hides
// the ones that make no sense for this participant right now (unmuting someone who is not
// muted, restoring someone who is not hard-muted, inviting a speaker to speak).

import type { ModerationAction, ModerationOption, ParticipantState } from './types';

interface ActionText {
  label: string;
  /// The confirmation question for destructive actions.
  confirm: (name: string) => string;
}

export const ACTION_TEXT: Record<ModerationAction, ActionText> = {
  mute: { label: 'Mute for everyone', confirm: (name) => `Mute ${name} for everyone?` },
  unmute: { label: 'Unmute for everyone', confirm: (name) => `Unmute ${name} for everyone?` },
  hard_mute: { label: 'Hard mute', confirm: (name) => `Take away ${name}'s right to speak until you restore it?` },
  restore: { label: 'Restore speaking', confirm: (name) => `Let ${name} speak again?` },
  kick: { label: 'Kick', confirm: (name) => `Remove ${name} from the room?` },
  unkick: { label: 'Allow back in', confirm: (name) => `Let ${name} back into the room?` },
  ban: { label: 'Ban', confirm: (name) => `Ban ${name} from the room for good?` },
  unban: { label: 'Unban', confirm: (name) => `Lift ${name}'s ban?` },
  invite_to_speak: { label: 'Invite to speak', confirm: (name) => `Invite ${name} to speak?` },
  move_to_audience: { label: 'Move to audience', confirm: (name) => `Move ${name} to the audience?` },
  make_moderator: { label: 'Make moderator', confirm: (name) => `Make ${name} a moderator?` },
  stop_share: { label: 'Stop their screen share', confirm: (name) => `Stop ${name}'s screen share?` },
};

const MODERATOR_ROLES = new Set(['moderator', 'admin', 'owner', 'host']);

/// Whether a participant is on stage (anyone who is not a listener).
export function isSpeaker(role: string | null): boolean {
  return role !== 'listener';
}

/// The offered actions that apply to `participant`, in the backend's order.
export function actionsFor(participant: ParticipantState, offered: readonly ModerationOption[], stage: boolean): ModerationOption[] {
  return offered.filter(({ action }) => {
    switch (action) {
      case 'mute':
        return !participant.muted;
      case 'unmute':
        return participant.muted;
      // A listener has nothing to take away; inviting them to speak is the way up.
      case 'hard_mute':
        return !participant.hardMuted && participant.canSpeak;
      case 'restore':
        return participant.hardMuted;
      case 'kick':
      case 'ban':
        return true;
      // For people who are not in the room; a participant here is neither kicked nor banned.
      case 'unkick':
      case 'unban':
        return false;
      case 'invite_to_speak':
        return stage && !isSpeaker(participant.role);
      case 'move_to_audience':
        return stage && isSpeaker(participant.role);
      case 'make_moderator':
        return !MODERATOR_ROLES.has(participant.role ?? '');
      case 'stop_share':
        return participant.sharing;
    }
  });
}
