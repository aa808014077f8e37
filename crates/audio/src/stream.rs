//! Where frames come from and go to, so a session can be fed by a microphone, a file or a tone,
//! and play to speakers or a file, without knowing which.

use crate::signal::Tone;
use crate::wav::{Recorder, WavError};

/// Produces 10 ms frames of 48 kHz mono audio.
pub trait FrameSource: Send {
    /// Fills `frame`; returns false once the source has nothing more (the frame is then silence).
    fn fill(&mut self, frame: &mut [i16]) -> bool;

    /// Something the user should know about the source (e.g. it moved to another device).
    fn take_notice(&mut self) -> Option<String> {
        None
    }

    /// Whether the source runs on its own clock (a sound card). Clocked sources are read when
    /// [`FrameSource::ready`] says a frame is there; the others on the session's 10 ms clock.
    fn clocked(&self) -> bool {
        false
    }

    /// For clocked sources: whether a whole frame has arrived. Worker thread; never blocks.
    fn ready(&mut self) -> bool {
        true
    }
}

/// Consumes 10 ms frames of 48 kHz mono audio.
pub trait FrameSink: Send {
    fn write(&mut self, frame: &[i16]) -> Result<(), WavError>;
    /// Flushes and closes the sink.
    fn finish(self: Box<Self>) -> Result<(), WavError>;

    /// Something the user should know about the sink (e.g. it moved to another device).
    fn take_notice(&mut self) -> Option<String> {
        None
    }

    /// Whether the sink runs on its own clock (a sound card). Clocked sinks are written when
    /// [`FrameSink::wants_frame`] says so; the others on the session's 10 ms clock.
    fn clocked(&self) -> bool {
        false
    }

    /// For clocked sinks: whether the device is about to run out and needs the next frame.
    /// Worker thread; never blocks.
    fn wants_frame(&mut self) -> bool {
        true
    }

    /// For clocked sinks: the device's callbacks that found nothing (or too little) queued to
    /// play, since the sink opened (an audible gap each). Worker thread; never blocks.
    fn glitches(&self) -> u64 {
        0
    }
}

impl FrameSource for Tone {
    fn fill(&mut self, frame: &mut [i16]) -> bool {
        Tone::fill(self, frame);
        true
    }
}

/// A recorded clip, played once.
pub struct Clip {
    samples: Vec<i16>,
    position: usize,
}

impl Clip {
    pub fn new(samples: Vec<i16>) -> Clip {
        Clip { samples, position: 0 }
    }
}

impl FrameSource for Clip {
    fn fill(&mut self, frame: &mut [i16]) -> bool {
        let remaining = &self.samples[self.position.min(self.samples.len())..];
        let count = remaining.len().min(frame.len());
        frame[..count].copy_from_slice(&remaining[..count]);
        frame[count..].fill(0);
        self.position += count;
        count > 0
    }
}

impl FrameSink for Recorder {
    fn write(&mut self, frame: &[i16]) -> Result<(), WavError> {
        self.append(frame)
    }

    fn finish(self: Box<Self>) -> Result<(), WavError> {
        Recorder::finish(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clip_plays_once_then_reports_its_end() {
        let mut clip = Clip::new(vec![1; 700]);
        let mut frame = vec![9i16; 480];
        assert!(clip.fill(&mut frame) && frame.iter().all(|&s| s == 1));
        assert!(clip.fill(&mut frame), "220 samples remain");
        assert!(frame[..220].iter().all(|&s| s == 1) && frame[220..].iter().all(|&s| s == 0));
        assert!(!clip.fill(&mut frame), "the clip has ended");
        assert!(frame.iter().all(|&s| s == 0), "after the end comes silence");
    }
}
