//! Keeps the library's video threads from starving the voice path.
//!
//! libwebrtc raises the threads that encode and decode video (`VideoEncoderQueue`,
//! `VideoDecoderQueue`, `IncomingVideoStream`) to real-time priority (`SCHED_FIFO`, up to 98)
//! whenever the process is allowed to: as root, with `CAP_SYS_NICE`, or with an rtprio limit,
//! as audio-group users often have. A screen share then runs ahead of everything that carries
//! voice: our capture and playout threads, the library's network and worker threads that move
//! the audio packets, and the sound server. On a 2-core machine sharing 1080p30 that added
//! ~185 ms to mouth-to-ear. [`calm_video_threads`] puts those threads back among ordinary ones,
//! a little below them (nice 10): the picture still gets every spare cycle, the voice first.

/// How far below ordinary threads the video threads run.
pub const VIDEO_THREAD_NICE: i32 = 10;

/// Moves every video thread of the library that is not already there to `SCHED_OTHER` at
/// [`VIDEO_THREAD_NICE`]; returns how many it moved. Cheap (a scan of this process's threads in
/// `/proc`), so callers run it whenever a share or a watched share reports, and catch threads
/// the library starts later (a new encoder after a resolution change). Nothing to do elsewhere
/// than Linux: 0.
pub fn calm_video_threads() -> usize {
    #[cfg(target_os = "linux")]
    {
        linux::calm()
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// One video thread of a process and how it is scheduled.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoThread {
    pub id: i32,
    pub name: String,
    /// The scheduling policy: 0 is `SCHED_OTHER`, 1 `SCHED_FIFO`, 2 `SCHED_RR`.
    pub policy: u32,
    pub nice: i32,
}

/// The video threads (see [`calm_video_threads`]) of process `pid` (`"self"` for this one), read
/// from `/proc` (empty elsewhere than Linux). Tests check a share's threads with it.
pub fn video_threads(pid: &str) -> Vec<VideoThread> {
    #[cfg(target_os = "linux")]
    {
        linux::video_threads(pid)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{VIDEO_THREAD_NICE, VideoThread};

    /// Thread names (as `/proc` shows them: 15 characters at most) of the video work: the
    /// library's, and Parley's own share (capture and scaling) and viewer threads.
    const VIDEO_THREADS: &[&str] =
        &["VideoEncoderQue", "VideoDecoderQue", "IncomingVideoSt", "parley-share", "parley-watch"];

    pub(super) fn video_threads(pid: &str) -> Vec<VideoThread> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
        let mut threads = Vec::new();
        for task in tasks.flatten() {
            let Some(id) = task.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
            let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else { continue };
            let name = name.trim_end();
            if !VIDEO_THREADS.contains(&name) {
                continue;
            }
            let Some((policy, nice)) =
                std::fs::read_to_string(task.path().join("stat")).ok().as_deref().and_then(scheduling)
            else {
                continue;
            };
            threads.push(VideoThread { id, name: name.to_string(), policy, nice });
        }
        threads
    }

    pub(super) fn calm() -> usize {
        let mut moved = 0;
        for thread in video_threads("self") {
            if (thread.policy, thread.nice) == (0, VIDEO_THREAD_NICE) {
                continue;
            }
            match crate::native::make_thread_ordinary(thread.id, VIDEO_THREAD_NICE) {
                Ok(()) => moved += 1,
                Err(error) => {
                    tracing::debug!(thread = thread.id, name = thread.name, %error, "cannot lower a video thread")
                }
            }
        }
        if moved > 0 {
            tracing::debug!(moved, "video threads lowered below the voice path");
        }
        moved
    }

    /// A `/proc/<pid>/task/<tid>/stat` line's scheduling policy (0 = `SCHED_OTHER`) and nice.
    /// The fields after the command name (which may hold spaces, so the split is at its `) `):
    /// nice is the 19th field of the line, the policy the 41st.
    pub(super) fn scheduling(stat: &str) -> Option<(u32, i32)> {
        let rest: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
        Some((rest.get(38)?.parse().ok()?, rest.get(16)?.parse().ok()?))
    }

    #[cfg(test)]
    mod tests {
        use super::scheduling;

        #[test]
        fn the_policy_and_nice_are_read_past_a_command_name_with_spaces() {
            // The shape of a real line: a FIFO thread at priority 98 (prio field -99), nice 0.
            let mut fields = vec!["0"; 50];
            fields[0] = "S";
            fields[15] = "-99";
            fields[16] = "0";
            fields[38] = "1";
            let line = format!("1234 (Incoming Vid) {}", fields.join(" "));
            assert_eq!(scheduling(&line), Some((1, 0)));
            fields[16] = "10";
            fields[38] = "0";
            let line = format!("1234 (VideoEncoderQue) {}", fields.join(" "));
            assert_eq!(scheduling(&line), Some((0, 10)));
            assert_eq!(scheduling("garbage"), None);
        }

        #[test]
        fn this_process_is_read() {
            let own = std::fs::read_to_string("/proc/thread-self/stat").expect("own stat");
            let (policy, _nice) = scheduling(&own).expect("parsed");
            assert!(policy <= 6, "a known policy: {policy}");
        }
    }
}
