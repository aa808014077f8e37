//! How the adapter reads what it is given and what the forum answers: invite links, room
//! arguments and forum URLs, the LiveKit URL of a join, the forum's roles and what they allow,
//! and the forum's failures as [`PlaneError`]s.

use url::Url;

use super::{Call, RoomInfo, Target};
use crate::http::Failure;
use crate::{Capabilities, Capability, ModerationAction, PlaneError};

/// The token of an invite link: the last path segment of `…/audioroom/invite/<token>`, or the
/// text itself when it is a bare token.
pub(super) fn invite_token(invite: &str) -> Result<String, PlaneError> {
    let trimmed = invite.trim();
    let token = match Url::parse(trimmed) {
        Ok(url) => url
            .path_segments()
            .and_then(|mut segments| segments.next_back().filter(|last| !last.is_empty()).map(str::to_string))
            .unwrap_or_default(),
        Err(_) => trimmed.to_string(),
    };
    let token = token.strip_suffix(".json").unwrap_or(&token).to_string();
    if token.is_empty() || !token.chars().all(|character| character.is_ascii_alphanumeric() || "-_".contains(character))
    {
        return Err(invalid("that is not an Audioroom invite link (…/audioroom/invite/<token>)"));
    }
    Ok(token)
}

/// The role Parley shows for a forum role. After a membership change the forum writes the
/// membership's name, so a stage audience member moved there is `participant` where a join said
/// `listener`; both mean the same on a stage, and Parley (which treats a stage participant who
/// cannot publish as hard-muted, but not a listener) calls them `listener`.
pub(super) fn parley_role(stage: bool, role: String) -> String {
    if stage && role == "participant" { "listener".to_string() } else { role }
}

/// The role a grant reports: the token's, except that a user who may manage the room is its
/// `moderator`. The forum's role says who may publish — everyone but the creator is a
/// `participant` in an open room, and a site moderator without a membership is a `listener` on a
/// stage — while the manage right is `can_manage`; Parley offers moderation by role.
pub(super) fn grant_role(token_role: Option<String>, can_manage: bool) -> Option<String> {
    match token_role.as_deref() {
        Some("participant" | "listener") | None if can_manage => Some("moderator".to_string()),
        _ => token_role,
    }
}

/// How Parley names a room to the user: its slug, unless the forum would read the slug as a
/// room id ([`reads_as_id`]); then its id.
pub(super) fn room_name(info: &RoomInfo) -> String {
    if info.slug.is_empty() || reads_as_id(&info.slug) { info.id.to_string() } else { info.slug.clone() }
}

/// Whether the forum's `find_by(id:)` takes `name` for an id: it starts with a digit (after an
/// optional sign), so ActiveRecord casts it to the leading integer.
pub(super) fn reads_as_id(name: &str) -> bool {
    let unsigned = name.trim_start().trim_start_matches(['+', '-']);
    unsigned.starts_with(|character: char| character.is_ascii_digit())
}

/// Base capabilities plus what the room and the user's role add.
pub(super) fn capabilities_for(stage: bool, can_manage: bool) -> Capabilities {
    let mut capabilities = vec![
        Capability::ListRooms,
        Capability::Join,
        Capability::Heartbeat,
        Capability::Leave,
        Capability::ListParticipants,
        Capability::ReportSelfState,
        Capability::Events,
        Capability::OpenInvite,
    ];
    if stage {
        capabilities.push(Capability::RaiseHand);
    }
    if can_manage {
        let mut actions = vec![
            ModerationAction::Mute,
            ModerationAction::Unmute,
            ModerationAction::HardMute,
            ModerationAction::Restore,
            ModerationAction::Kick,
            ModerationAction::Unkick,
            ModerationAction::Ban,
            ModerationAction::Unban,
            ModerationAction::MakeModerator,
        ];
        if stage {
            actions.extend([ModerationAction::InviteToSpeak, ModerationAction::MoveToAudience]);
        }
        capabilities.extend(actions.into_iter().map(Capability::Moderate));
    }
    Capabilities::new(capabilities)
}

/// Status mapping for Audioroom and Discourse error bodies (§1.5).
pub(super) fn map_failure(failure: Failure, call: Call<'_>) -> PlaneError {
    let Some(status) = failure.status.map(|status| status.as_u16()) else {
        return failure.into_error();
    };
    // The plugin renders `{error}`; Discourse core renders `{errors:[…], error_type}`.
    let plugin_error = failure.body.as_ref().and_then(|body| body.get("error")).is_some_and(|error| error.is_string());
    let message = failure.message.clone();
    match (status, call) {
        (401, _) => PlaneError::Unauthorized { message },
        (403, _) if failure.body_str("error_type").as_deref() == Some("not_logged_in") => {
            PlaneError::Unauthorized { message }
        }
        (403, _) if plugin_error => {
            let lower = message.to_lowercase();
            if lower.contains("banned") {
                PlaneError::Banned { message }
            } else if matches!(call, Call::Join(_)) {
                // The forum's text ("You have been removed from this room.") does not say that a
                // kick, unlike a ban, lapses: the room's kicked list expires 5 minutes after the
                // latest kick there, or a moderator lifts it.
                PlaneError::Kicked {
                    message: format!(
                        "kicked; you may join again once a moderator lifts it or within 5 minutes ({message})"
                    ),
                }
            } else if lower.contains("kick") || matches!(call, Call::Heartbeat(_)) {
                // A heartbeat renders `{error}` 403s only for kicked or banned users.
                PlaneError::Kicked { message }
            } else {
                PlaneError::Forbidden { message }
            }
        }
        (403, Call::SelfState { unmuting: true, .. }) => PlaneError::Forbidden {
            // Core's generic `invalid_access` text: on a stage only an admin or a speaker or
            // moderator member may unmute (or the room is not the user's to join any more).
            message: format!(
                "listeners cannot unmute in a stage room until a moderator invites them to speak ({message})"
            ),
        },
        (403, Call::Invite) => PlaneError::Forbidden {
            message: format!(
                "the invite is for a room you may not join: the forum admits only members to a private room, and its invite links do not make you one; ask a moderator to add you ({message})"
            ),
        },
        (404, _) => PlaneError::NotFound { what: call.subject(), message },
        (409, Call::Join(_)) => match failure.body_str("conflicting_room_id") {
            Some(room_id) => PlaneError::InAnotherRoom {
                room_id,
                room_name: failure.body_str("conflicting_room_name").filter(|name| !name.is_empty()),
            },
            None => failure.into_error(),
        },
        (422, Call::Join(_)) => PlaneError::RoomFull { message },
        _ => failure.into_error(),
    }
}

pub(super) fn moderation_target(participant: &str) -> Result<Target, PlaneError> {
    let participant = participant.trim();
    if let Some(username) = participant.strip_prefix('@') {
        if username.is_empty() {
            return Err(invalid("name the participant: a user id or a username"));
        }
        return Ok(Target::Username(username.to_string()));
    }
    if participant.is_empty() {
        return Err(invalid("name the participant: a user id or a username"));
    }
    Ok(match participant.parse::<u64>() {
        Ok(id) => Target::UserId(id),
        Err(_) => Target::Username(participant.to_string()),
    })
}

pub(super) fn room_argument(room: &str) -> Result<&str, PlaneError> {
    let room = room.trim();
    if room.is_empty() {
        return Err(invalid("name the room: its id or slug"));
    }
    Ok(room)
}

pub(super) fn parse_forum_url(text: &str) -> Result<Url, PlaneError> {
    let text = text.trim();
    let url = Url::parse(text).map_err(|error| {
        invalid(&format!("the forum URL {text:?} is not valid ({error}); e.g. https://forum.example.org"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(&format!(
            "the forum URL {text:?} must start with https:// (or http:// for a local forum)"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(&format!(
            "the forum URL {:?} must be the forum's address alone, without credentials, query or fragment",
            crate::http::redact_url(&url)
        )));
    }
    Ok(url)
}

/// The forum's `audioroom_livekit_url` setting as a signalling URL (admins sometimes enter the
/// `https://` form of the same host).
pub(super) fn livekit_url(url: Option<&str>) -> Result<String, PlaneError> {
    let url = url.map(str::trim).filter(|url| !url.is_empty()).ok_or_else(|| PlaneError::NotConfigured {
        message: "the forum gave no LiveKit URL (its admin must set the LiveKit server URL)".into(),
    })?;
    let absolute = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_string()
    };
    match Url::parse(&absolute) {
        Ok(parsed) if matches!(parsed.scheme(), "ws" | "wss") && parsed.host_str().is_some() => Ok(absolute),
        _ => Err(PlaneError::Malformed {
            detail: format!("the forum's LiveKit URL {url:?} is not a ws:// or wss:// URL"),
        }),
    }
}

pub(super) fn invalid(message: &str) -> PlaneError {
    PlaneError::InvalidInput { message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_answer_never_shows_its_token() {
        let answer: super::super::wire::JoinAnswer = serde_json::from_str(
            r#"{"room":{"id":7,"name":"Porch"},"livekit_token":"eyJhbGciOiJIUzI1NiJ9.e30.sig","livekit_url":"wss://lk"}"#,
        )
        .expect("the plugin's answer");
        let shown = format!("{answer:?}");
        assert!(!shown.contains("eyJ") && shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn invite_links_and_bare_tokens_give_the_token() {
        assert_eq!(invite_token("https://forum.example.org/audioroom/invite/abc-12_x").unwrap(), "abc-12_x");
        assert_eq!(invite_token("https://forum.example.org/audioroom/invite/abc.json").unwrap(), "abc");
        assert_eq!(invite_token("  abc123 ").unwrap(), "abc123");
        let error = invite_token("https://forum.example.org/").unwrap_err();
        assert_eq!(error.code(), "invalid_input", "{error}");
        assert!(invite_token("../admin").is_err(), "path tricks are refused");
    }

    #[test]
    fn moderation_needs_manage_and_speaker_changes_need_a_stage() {
        let listener = capabilities_for(true, false);
        assert!(listener.supports(Capability::RaiseHand), "stage rooms offer hands to everyone");
        assert!(listener.moderation().is_empty(), "no moderation without can_manage");
        let open_moderator = capabilities_for(false, true);
        assert!(!open_moderator.supports(Capability::RaiseHand), "open rooms have no hands");
        assert!(open_moderator.can_moderate(ModerationAction::Kick));
        assert!(!open_moderator.can_moderate(ModerationAction::InviteToSpeak), "everyone speaks in open rooms");
        // Everything the plugin has an endpoint for (stopping a share needs RoomService).
        let all_but_stop_share: Vec<_> =
            ModerationAction::ALL.into_iter().filter(|action| *action != ModerationAction::StopShare).collect();
        assert_eq!(capabilities_for(true, true).moderation(), all_but_stop_share);
    }

    #[test]
    fn livekit_urls_become_websocket_urls() {
        assert_eq!(livekit_url(Some("https://lk.example.org")).unwrap(), "wss://lk.example.org");
        assert_eq!(livekit_url(Some("ws://127.0.0.1:7880")).unwrap(), "ws://127.0.0.1:7880");
        assert_eq!(livekit_url(None).unwrap_err().code(), "not_configured");
        assert_eq!(livekit_url(Some("lk.example.org")).unwrap_err().code(), "malformed_response");
    }

    #[test]
    fn targets_are_ids_or_usernames() {
        assert!(matches!(moderation_target("42"), Ok(Target::UserId(42))));
        assert!(matches!(moderation_target("bob"), Ok(Target::Username(name)) if name == "bob"));
        assert!(matches!(moderation_target("@2024"), Ok(Target::Username(name)) if name == "2024"));
        assert_eq!(moderation_target(" ").err().map(|error| error.code()), Some("invalid_input"));
    }
}
