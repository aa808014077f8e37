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

/// Frame `frame` of the pattern as filled rectangles, in drawing order: `(colour, [x, y, width,
/// height])`. The counter shows `frame` modulo 2^`COUNTER_BITS`.
pub fn shapes(frame: u64) -> Vec<([u8; 3], [u32; 4])> {
    let bar_width = WIDTH / BARS.len() as u32;
    let mut shapes: Vec<([u8; 3], [u32; 4])> = BARS
        .iter()
        .enumerate()
        .map(|(index, colour)| (*colour, [index as u32 * bar_width, 0, bar_width, BARS_HEIGHT]))
        .collect();
    shapes.push(([BACKGROUND; 3], [0, BARS_HEIGHT, WIDTH, HEIGHT - BARS_HEIGHT]));
    let counter = frame % (1 << COUNTER_BITS);
    for bit in 0..COUNTER_BITS {
        let set = counter >> (COUNTER_BITS - 1 - bit) & 1 == 1;
        let colour = if set { [255; 3] } else { [0; 3] };
        shapes.push((colour, [COUNTER_LEFT + bit * COUNTER_BLOCK, COUNTER_TOP, COUNTER_BLOCK, COUNTER_HEIGHT]));
    }
    shapes.push(([255; 3], [marker_left(frame), MARKER_TOP, MARKER, MARKER]));
    shapes
}

/// Paints frame `frame` into a `WIDTH` × `HEIGHT` BGRx picture whose rows are `stride` bytes
/// apart.
pub fn paint_bgrx(frame: u64, picture: &mut [u8], stride: usize) {
    for ([red, green, blue], [x, y, width, height]) in shapes(frame) {
        for row in y..y + height {
            let start = row as usize * stride + x as usize * 4;
            let Some(span) = picture.get_mut(start..start + width as usize * 4) else { continue };
            for pixel in span.chunks_exact_mut(4) {
                pixel.copy_from_slice(&[blue, green, red, 255]);
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_painted_frame_reads_back_as_its_counter_and_marker() {
        let stride = WIDTH as usize * 4;
        let mut picture = vec![0; stride * HEIGHT as usize];
        paint_bgrx(1234, &mut picture, stride);
        // BGRx → RGBA, as a viewer saves it.
        for pixel in picture.chunks_exact_mut(4) {
            pixel.swap(0, 2);
        }
        assert_eq!(read_counter(&picture, WIDTH), 1234);
        assert_eq!(find_marker(&picture, WIDTH), Some(marker_left(1234)));
        let at = ((BARS_HEIGHT / 2) as usize * WIDTH as usize + (WIDTH / 16) as usize * 3) * 4;
        assert_eq!(&picture[at..at + 3], &BARS[1][..], "the second bar");
    }
}
