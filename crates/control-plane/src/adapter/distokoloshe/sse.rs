//! The `/api/events` stream: server-sent events split into `(event, data)` pairs.

/// The most an event may hold before the stream is given up (and reopened): the server's events
/// are a few hundred bytes; a stream that sends more without ending an event is broken or hostile.
pub(super) const MAX_PENDING_EVENT: usize = 64 * 1024;

/// Splits a server-sent-events byte stream into `(event, data)` pairs; comments (`:ping`) and
/// events without data are dropped. Each byte is scanned once: the search for an event's end
/// resumes where the last one stopped.
#[derive(Default)]
pub(super) struct SseParser {
    pub(super) buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no event end.
    pub(super) scanned: usize,
}

/// An event grew past [`MAX_PENDING_EVENT`] without ending.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Oversized;

impl SseParser {
    pub(super) fn push(&mut self, chunk: &[u8]) -> Result<Vec<(String, String)>, Oversized> {
        self.buffer.extend(chunk.iter().copied().filter(|byte| *byte != b'\r'));
        let mut events = Vec::new();
        loop {
            // A `\n\n` may straddle the old and the new bytes: look one byte back.
            let from = self.scanned.saturating_sub(1);
            let Some(found) = self.buffer[from..].windows(2).position(|pair| pair == b"\n\n") else {
                self.scanned = self.buffer.len();
                break;
            };
            let end = from + found;
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            self.scanned = 0;
            if let Some(event) = Self::event(&block) {
                events.push(event);
            }
        }
        if self.buffer.len() > MAX_PENDING_EVENT {
            return Err(Oversized);
        }
        Ok(events)
    }

    pub(super) fn event(block: &[u8]) -> Option<(String, String)> {
        let text = String::from_utf8_lossy(block);
        let mut kind = String::from("message");
        let mut data: Vec<&str> = Vec::new();
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                kind = value.trim().to_string();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        (!data.is_empty()).then(|| (kind, data.join("\n")))
    }
}
