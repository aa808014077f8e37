//! How many bytes a room's connections have carried: the transports' counters from the
//! engine's WebRTC statistics (`GetSessionStats`), read while the room is joined.

use std::sync::{Arc, Weak};

use crate::engine::OwnedHandle;
use crate::error::Error;
use crate::proto;
use crate::proto::ffi_event::Message as EventMessage;
use crate::proto::ffi_request::Message as RequestMessage;
use crate::room::Room;

/// Bytes carried by the room's transports since they opened (both peer connections, media,
/// data and RTCP, without IP/UDP headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

/// Reads a room's [`Traffic`]; cheap to clone, and does not keep the room alive (a handle on a
/// room that was dropped answers with an error; so does the default one, of no room).
#[derive(Clone, Default)]
pub struct RoomTraffic {
    room: Weak<OwnedHandle>,
}

impl Room {
    /// A handle to read this room's traffic counters from another task.
    pub fn traffic(&self) -> RoomTraffic {
        RoomTraffic { room: Arc::downgrade(self.handle()) }
    }
}

impl RoomTraffic {
    /// The counters now. Any task with a tokio runtime.
    ///
    /// Errors: the room is gone; engine errors.
    pub async fn read(&self) -> Result<Traffic, Error> {
        let (engine, room_handle) = {
            let room = self.room.upgrade().ok_or_else(|| Error::InvalidArgument("the room was left".into()))?;
            (room.engine(), room.id())
        };
        let (event, _) = engine
            .request_async(
                |async_id| {
                    RequestMessage::GetSessionStats(proto::GetSessionStatsRequest {
                        room_handle,
                        request_async_id: Some(async_id),
                    })
                },
                None,
            )
            .await?;
        let EventMessage::GetSessionStats(callback) = event else {
            return Err(Error::Protocol("get-session-stats answered with another callback".into()));
        };
        match callback.message {
            Some(proto::get_session_stats_callback::Message::Result(result)) => {
                Ok(sum_transports(result.publisher_stats.iter().chain(&result.subscriber_stats)))
            }
            Some(proto::get_session_stats_callback::Message::Error(error)) => {
                Err(Error::Engine(format!("reading the session's statistics failed: {error}")))
            }
            None => Err(Error::Protocol("get-session-stats answered with nothing".into())),
        }
    }
}

/// The sum of the transport counters among `stats`.
fn sum_transports<'a>(stats: impl Iterator<Item = &'a proto::RtcStats>) -> Traffic {
    stats.fold(Traffic::default(), |total, stats| match &stats.stats {
        Some(proto::rtc_stats::Stats::Transport(transport)) => Traffic {
            received_bytes: total.received_bytes + transport.transport.bytes_received,
            sent_bytes: total.sent_bytes + transport.transport.bytes_sent,
        },
        _ => total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(received: u64, sent: u64) -> proto::RtcStats {
        let transport = proto::TransportStats { bytes_received: received, bytes_sent: sent, ..Default::default() };
        proto::RtcStats {
            stats: Some(proto::rtc_stats::Stats::Transport(proto::rtc_stats::Transport {
                rtc: proto::RtcStatsData::default(),
                transport,
            })),
        }
    }

    #[test]
    fn traffic_sums_the_transports_of_both_connections_only() {
        let pair = proto::RtcStats {
            stats: Some(proto::rtc_stats::Stats::CandidatePair(proto::rtc_stats::CandidatePair {
                rtc: proto::RtcStatsData::default(),
                candidate_pair: proto::CandidatePairStats { bytes_received: 1_000_000, ..Default::default() },
            })),
        };
        let publisher = [transport(10, 5_000)];
        let subscriber = [transport(70_000, 300), pair];
        let traffic = sum_transports(publisher.iter().chain(&subscriber));
        assert_eq!(traffic, Traffic { received_bytes: 70_010, sent_bytes: 5_300 });
    }

    #[test]
    fn a_room_that_is_gone_is_a_clear_error() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let error = runtime.block_on(RoomTraffic::default().read()).expect_err("no room");
        assert_eq!(error.to_string(), "the room was left");
    }
}
