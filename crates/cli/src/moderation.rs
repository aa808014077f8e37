//! `parley mod --profile P --room R <action> <participant>`: one moderation action through the
//! profile's adapter, or through LiveKit's RoomService when the adapter lacks the action and its
//! token carries `roomAdmin` (`parley_core::membership::moderate`).
//!
//! The command asks the backend for a grant to the room first (moderation endpoints are
//! per-room and some need the room's token), and tells the backend it left afterwards where the
//! backend tracks presence.

use clap::Args;
use parley_control_plane::{Capability, ModerationAction, PlaneError};
use parley_core::client::ErrorCode;
use parley_core::membership;

use crate::exit::{Failure, classify, fail_as};
use crate::profile::{join_grant, open};

#[derive(Args)]
pub struct ModArgs {
    /// The saved profile to act through.
    #[arg(long)]
    profile: String,
    /// The room (as the backend names it).
    #[arg(long)]
    room: String,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    json: bool,
    /// mute, unmute, hard-mute, restore, kick, unkick, ban, unban, invite-to-speak,
    /// move-to-audience, make-moderator.
    #[arg(value_parser = parse_action)]
    action: ModerationAction,
    /// Their LiveKit identity (or the backend's user name where it has one).
    participant: String,
}

fn parse_action(text: &str) -> Result<ModerationAction, String> {
    text.parse().map_err(|error: PlaneError| error.to_string())
}

pub async fn run(args: ModArgs) -> Result<(), Failure> {
    let plane = open(&args.profile).await?;
    let grant = join_grant(plane.as_ref(), &args.room, false).await?;
    let outcome = membership::moderate(plane.as_ref(), &grant, args.action, &args.participant).await;
    if plane.capabilities().supports(Capability::Leave)
        && let Err(error) = plane.leave(&grant).await
    {
        tracing::debug!(%error, "leaving after the moderation action failed");
    }
    match outcome {
        Ok(()) => {
            if args.json {
                let shown = serde_json::json!({
                    "ok": true,
                    "action": args.action,
                    "participant": args.participant,
                    "room": grant.room_id,
                });
                println!("{shown}");
            } else {
                println!("{} {}: done", args.action, args.participant);
            }
            Ok(())
        }
        Err(PlaneError::Unsupported { .. }) => {
            let available = membership::moderation_actions(plane.as_ref(), &grant);
            let offered = if available.is_empty() {
                "no moderation at all with this profile".to_string()
            } else {
                format!("it can: {}", available.iter().map(|action| action.as_str()).collect::<Vec<_>>().join(", "))
            };
            let why = if args.action == ModerationAction::MakeModerator {
                " (LiveKit itself has no moderator role; it is the backend's to give)"
            } else {
                ""
            };
            Err(fail_as(
                ErrorCode::Unsupported,
                anyhow::anyhow!("{} cannot {} in this room{why}; {offered}", plane.kind(), args.action),
            ))
        }
        Err(error) => Err(classify(error, "moderating")),
    }
}
