//! The test pattern `parley-pattern-window` draws, shared with the tests that read it back:
//! eight colour bars over the top two thirds, a frame counter as black and white blocks, and
//! a marker moving across the bottom. Every feature is large (≥ 40 pixels) so that it
//! survives video compression.

/// The window's size.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 720;
/// The bars fill rows `0..BARS_HEIGHT`, each `WIDTH / 8` wide, in this order (RGB).
pub const BARS_HEIGHT: u32 = 480;
pub const BARS: [[u8; 3]; 8] =
    [[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0], [0, 0, 255], [0, 0, 0]];
/// Grey behind the counter and marker.
pub const BACKGROUND: u8 = 96;
/// The counter: `COUNTER_BITS` blocks from `COUNTER_LEFT`, most significant first, each
/// `COUNTER_BLOCK` wide in rows `COUNTER_TOP..COUNTER_TOP + COUNTER_HEIGHT`; white is a one.
pub const COUNTER_BITS: u32 = 16;
pub const COUNTER_LEFT: u32 = 32;
pub const COUNTER_BLOCK: u32 = 48;
pub const COUNTER_TOP: u32 = 500;
pub const COUNTER_HEIGHT: u32 = 48;
/// The marker: a white `MARKER` × `MARKER` square in rows from `MARKER_TOP`, at
/// x = (frame × `MARKER_STEP`) mod (`WIDTH` − `MARKER`).
pub const MARKER: u32 = 80;
pub const MARKER_TOP: u32 = 600;
pub const MARKER_STEP: u32 = 24;

/// Where the marker's left edge is on frame `frame`.
pub fn marker_left(frame: u64) -> u32 {
    ((frame * u64::from(MARKER_STEP)) % u64::from(WIDTH - MARKER)) as u32
}

/// Reads the frame counter back from an RGBA picture of the pattern at its own size.
pub fn read_counter(rgba: &[u8], width: u32) -> u32 {
    let row = (COUNTER_TOP + COUNTER_HEIGHT / 2) as usize;
    (0..COUNTER_BITS).fold(0, |value, bit| {
        let x = (COUNTER_LEFT + bit * COUNTER_BLOCK + COUNTER_BLOCK / 2) as usize;
        let at = (row * width as usize + x) * 4;
        let bright = rgba.get(at..at + 3).is_some_and(|pixel| pixel.iter().map(|&c| u32::from(c)).sum::<u32>() > 384);
        (value << 1) | u32::from(bright)
    })
}

/// Finds the marker's left edge in an RGBA picture of the pattern at its own size: the first
/// bright run of at least half the marker's width along its middle row.
pub fn find_marker(rgba: &[u8], width: u32) -> Option<u32> {
    let row = (MARKER_TOP + MARKER / 2) as usize;
    let mut run = 0;
    for x in 0..width as usize {
        let at = (row * width as usize + x) * 4;
        let bright = rgba.get(at..at + 3).is_some_and(|pixel| pixel.iter().all(|&c| c > 200));
        run = if bright { run + 1 } else { 0 };
        if run == MARKER / 2 {
            return Some(x as u32 + 1 - MARKER / 2);
        }
    }
    None
}
