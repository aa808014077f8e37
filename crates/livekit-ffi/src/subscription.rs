//! What we receive of others' tracks: subscribe or unsubscribe one publication, pause its video,
//! and ask for a lower quality or a smaller size (adaptive stream by hand). These act on the
//! publications a [`Room`] keeps, named by participant identity and track sid, through a
//! [`Subscriptions`] handle that a room's event follower can hold beside the room.

use crate::error::Error;
use crate::proto;
use crate::proto::ffi_request::Message as RequestMessage;
use crate::proto::ffi_response::Message as ResponseMessage;
use std::sync::{Arc, Mutex};

use crate::engine::Engine;
use crate::room::{Room, RoomState};

/// The simulcast layer to receive of a remote video track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoQuality {
    Low,
    Medium,
    High,
}

/// Which of a room's remote tracks we receive, and how. Cheap to clone; it acts on the room's
/// publications for as long as the room knows them (get one with [`Room::subscriptions`]; the
/// default one belongs to no room and knows no publication).
#[derive(Clone, Default)]
pub struct Subscriptions {
    state: Arc<Mutex<RoomState>>,
}

impl Room {
    /// A handle on what this room receives of others' tracks.
    pub fn subscriptions(&self) -> Subscriptions {
        Subscriptions { state: self.state() }
    }
}

impl Subscriptions {
    /// The engine's handle of `identity`'s publication `sid`, while the room knows it.
    fn publication_handle(&self, identity: &str, sid: &str) -> Result<(&'static Engine, u64), Error> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).publication_handle(identity, sid)
    }

    /// Subscribes to (or unsubscribes from) `identity`'s track `sid`. The outcome arrives as a
    /// room event: [`crate::RoomEvent::VideoTrackSubscribed`] / `AudioTrackSubscribed`, or
    /// [`crate::RoomEvent::TrackUnsubscribed`]. Any thread.
    ///
    /// Errors: [`Error::InvalidArgument`] for a publication the room does not know; engine errors.
    pub fn set_subscribed(&self, identity: &str, sid: &str, subscribed: bool) -> Result<(), Error> {
        let (engine, publication_handle) = self.publication_handle(identity, sid)?;
        match engine.request(RequestMessage::SetSubscribed(proto::SetSubscribedRequest {
            subscribe: subscribed,
            publication_handle,
        }))? {
            ResponseMessage::SetSubscribed(_) => Ok(()),
            _ => Err(Error::Protocol("set-subscribed answered with another response".into())),
        }
    }

    /// Pauses (or resumes) a subscribed track without unsubscribing: the server stops sending
    /// its media meanwhile (a screen share nobody looks at). Any thread.
    pub fn set_track_enabled(&self, identity: &str, sid: &str, enabled: bool) -> Result<(), Error> {
        let (engine, track_publication_handle) = self.publication_handle(identity, sid)?;
        match engine.request(RequestMessage::EnableRemoteTrackPublication(
            proto::EnableRemoteTrackPublicationRequest { track_publication_handle, enabled },
        ))? {
            ResponseMessage::EnableRemoteTrackPublication(_) => Ok(()),
            _ => Err(Error::Protocol("enable-remote-track-publication answered with another response".into())),
        }
    }

    /// Asks for one simulcast layer of a remote video track. Any thread.
    pub fn set_video_quality(&self, identity: &str, sid: &str, quality: VideoQuality) -> Result<(), Error> {
        let (engine, track_publication_handle) = self.publication_handle(identity, sid)?;
        let quality = match quality {
            VideoQuality::Low => proto::VideoQuality::Low,
            VideoQuality::Medium => proto::VideoQuality::Medium,
            VideoQuality::High => proto::VideoQuality::High,
        };
        match engine.request(RequestMessage::SetRemoteTrackPublicationQuality(
            proto::SetRemoteTrackPublicationQualityRequest { track_publication_handle, quality: quality as i32 },
        ))? {
            ResponseMessage::SetRemoteTrackPublicationQuality(_) => Ok(()),
            _ => Err(Error::Protocol("set-remote-track-publication-quality answered with another response".into())),
        }
    }

    /// Tells the server how large a remote video track is shown, so that it sends the layer that
    /// fits. Any thread.
    pub fn set_video_dimensions(&self, identity: &str, sid: &str, width: u32, height: u32) -> Result<(), Error> {
        let (engine, track_publication_handle) = self.publication_handle(identity, sid)?;
        match engine.request(RequestMessage::UpdateRemoteTrackPublicationDimension(
            proto::UpdateRemoteTrackPublicationDimensionRequest { track_publication_handle, width, height },
        ))? {
            ResponseMessage::UpdateRemoteTrackPublicationDimension(_) => Ok(()),
            _ => {
                Err(Error::Protocol("update-remote-track-publication-dimension answered with another response".into()))
            }
        }
    }
}
