//! Downscaling BGRA pictures to the size a share is sent at.
//!
//! A box filter (each output pixel the mean of the source pixels it covers) written here rather
//! than a crate: shares only ever shrink (by at most a few times), where a box filter is what
//! keeps text legible, it needs no tables or scratch buffers (nothing is allocated per frame),
//! and equal sizes are a plain copy. At 1920 × 1080 → 1280 × 720 it reads each source pixel
//! once or twice.

/// Writes `source` (`source_width` × `source_height` BGRA, rows packed) scaled to
/// `target_width` × `target_height` into `target` (rows packed). Sizes larger than the source
/// are clamped per pixel (no enlargement filter: callers never enlarge).
///
/// Panics when a buffer is shorter than its size says (a caller's bug).
pub fn scale_bgra(
    source: &[u8],
    source_width: u32,
    source_height: u32,
    target: &mut [u8],
    target_width: u32,
    target_height: u32,
) {
    let (sw, sh) = (source_width as usize, source_height as usize);
    let (tw, th) = (target_width as usize, target_height as usize);
    assert!(source.len() >= sw * sh * 4 && target.len() >= tw * th * 4, "picture buffers shorter than their sizes");
    if (sw, sh) == (tw, th) {
        target[..tw * th * 4].copy_from_slice(&source[..sw * sh * 4]);
        return;
    }
    // The source span [start, end) an output index covers, at least one pixel wide.
    let span = |index: usize, source_len: usize, target_len: usize| {
        let start = index * source_len / target_len;
        let end = ((index + 1) * source_len).div_ceil(target_len).clamp(start + 1, source_len.max(start + 1));
        (start.min(source_len - 1), end.min(source_len))
    };
    for y in 0..th {
        let (top, bottom) = span(y, sh, th);
        let row = &mut target[y * tw * 4..(y + 1) * tw * 4];
        for x in 0..tw {
            let (left, right) = span(x, sw, tw);
            let mut sums = [0u32; 4];
            for source_y in top..bottom {
                let line = &source[(source_y * sw + left) * 4..(source_y * sw + right) * 4];
                for pixel in line.chunks_exact(4) {
                    for (sum, value) in sums.iter_mut().zip(pixel) {
                        *sum += u32::from(*value);
                    }
                }
            }
            let count = ((bottom - top) * (right - left)) as u32;
            for (channel, sum) in row[x * 4..x * 4 + 4].iter_mut().zip(sums) {
                *channel = ((sum + count / 2) / count) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_filter_averages_what_each_pixel_covers() {
        // 4 × 2: left half black, right half white → 2 × 1: one black, one white pixel.
        let mut source = vec![0u8; 4 * 2 * 4];
        for y in 0..2 {
            for x in 2..4 {
                source[(y * 4 + x) * 4..(y * 4 + x) * 4 + 4].copy_from_slice(&[255; 4]);
            }
        }
        let mut target = vec![7u8; 2 * 4];
        scale_bgra(&source, 4, 2, &mut target, 2, 1);
        assert_eq!(target, [0, 0, 0, 0, 255, 255, 255, 255]);
        // 3 → 2 covers overlapping spans and stays in bounds.
        let mut target = vec![0u8; 2 * 4];
        scale_bgra(&source[..3 * 4], 3, 1, &mut target, 2, 1);
        assert_eq!(target[0], 0);
        // Equal sizes copy.
        let mut copy = vec![0u8; source.len()];
        scale_bgra(&source, 4, 2, &mut copy, 4, 2);
        assert_eq!(copy, source);
    }
}
