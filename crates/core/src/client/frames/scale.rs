//! Scaling a watched share's I420 pictures down to its viewer: halving by 2×2 means as often as
//! the viewer allows, then `fast_image_resize`'s bilinear filter unless the halved picture is
//! close enough (see the parent module).

use parley_livekit_ffi::{PixelFormat, ReceivedVideoFrame};

/// The size to scale a `width` × `height` picture to so that it fits in `fit` (aspect kept),
/// or `None` when it already fits.
pub(super) fn scaled_size(width: u32, height: u32, fit: (u32, u32)) -> Option<(u32, u32)> {
    if width <= fit.0 && height <= fit.1 {
        return None;
    }
    let ratio = f64::min(f64::from(fit.0) / f64::from(width), f64::from(fit.1) / f64::from(height));
    let scaled = |side: u32| ((f64::from(side) * ratio).round() as u32).max(1);
    Some((scaled(width), scaled(height)))
}

/// One plane of an I420 picture: its samples, rows packed.
#[derive(Clone, Copy)]
pub(super) struct Plane<'a> {
    pub(super) samples: &'a [u8],
    pub(super) width: u32,
    pub(super) height: u32,
}

/// The Y, U and V planes of a packed `width` × `height` I420 picture, or why it is not one.
pub(super) fn planes(data: &[u8], width: u32, height: u32) -> Result<[Plane<'_>; 3], String> {
    if data.len() != PixelFormat::I420.frame_len(width, height) {
        return Err(format!("{} bytes is not a {width}x{height} I420 picture", data.len()));
    }
    let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
    let (y, chroma) = data.split_at(width as usize * height as usize);
    let (u, v) = chroma.split_at(chroma.len() / 2);
    let chroma = |samples| Plane { samples, width: chroma_width, height: chroma_height };
    Ok([Plane { samples: y, width, height }, chroma(u), chroma(v)])
}

/// How much larger than the viewer a halved picture may stay rather than be filtered down to
/// it: the window scales it the rest of the way as it draws it (the viewer's `<img>` fits its
/// box). A 1080p share in a room view a little under 960 pixels wide is halved and sent as
/// 960×540, where filtering the last few percent off cost as much as the rest of the encoding.
const CLOSE_ENOUGH: f64 = 1.15;

/// Scales I420 pictures down, reusing its buffers from picture to picture.
#[derive(Default)]
pub(super) struct Scaler {
    resizer: fast_image_resize::Resizer,
    /// A plane halved once and again (two buffers, one read while the other is written).
    halves: [Vec<u8>; 2],
    /// Column sums of a row pair while halving.
    sums: Vec<u16>,
}

impl Scaler {
    /// `frame` (I420) scaled down towards `width` × `height` into `out` (I420), plane by plane:
    /// halved as often as the target allows, then filtered to the target unless the halved
    /// picture is close enough to it. Returns the size of the picture in `out`.
    pub(super) fn scale(
        &mut self,
        frame: &ReceivedVideoFrame,
        width: u32,
        height: u32,
        out: &mut Vec<u8>,
    ) -> Result<(u32, u32), String> {
        if frame.format != PixelFormat::I420 {
            return Err(format!("a {:?} picture where I420 was asked for", frame.format));
        }
        let sources = planes(&frame.data, frame.width, frame.height)?;
        let (mut halvings, mut halved) = (0, (frame.width, frame.height));
        while width * 2 <= halved.0 && height * 2 <= halved.1 {
            halvings += 1;
            halved = (halved.0.div_ceil(2), halved.1.div_ceil(2));
        }
        let close = f64::from(halved.0) <= f64::from(width) * CLOSE_ENOUGH
            && f64::from(halved.1) <= f64::from(height) * CLOSE_ENOUGH;
        let (width, height) = if close { halved } else { (width, height) };
        out.resize(PixelFormat::I420.frame_len(width, height), 0);
        let (luma, chroma) = out.split_at_mut(width as usize * height as usize);
        let (u, v) = chroma.split_at_mut(chroma.len() / 2);
        let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
        let targets = [(luma, width, height), (u, chroma_width, chroma_height), (v, chroma_width, chroma_height)];
        for (source, (samples, width, height)) in sources.into_iter().zip(targets) {
            self.scale_plane(source, halvings, PlaneMut { samples, width, height })?;
        }
        Ok((width, height))
    }

    /// `source` halved `halvings` times, then filtered into `target` unless already its size.
    fn scale_plane(&mut self, source: Plane<'_>, halvings: u32, target: PlaneMut<'_>) -> Result<(), String> {
        use fast_image_resize::images::{Image, ImageRef};
        use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions};
        let [even, odd] = &mut self.halves;
        let (mut write, mut read) = (even, odd);
        let mut current = source;
        for halving in 1..=halvings {
            let size = (current.width.div_ceil(2), current.height.div_ceil(2));
            if halving == halvings && size == (target.width, target.height) {
                // The last halving lands on the target: straight into it.
                halve(current, target.samples, &mut self.sums);
                return Ok(());
            }
            write.resize(size.0 as usize * size.1 as usize, 0);
            halve(current, write, &mut self.sums);
            std::mem::swap(&mut write, &mut read);
            current = Plane { samples: read, width: size.0, height: size.1 };
        }
        if (current.width, current.height) == (target.width, target.height) {
            target.samples.copy_from_slice(current.samples);
            return Ok(());
        }
        let source = ImageRef::new(current.width, current.height, current.samples, PixelType::U8)
            .map_err(|error| format!("a {}x{} plane: {error}", current.width, current.height))?;
        let mut target = Image::from_slice_u8(target.width, target.height, target.samples, PixelType::U8)
            .map_err(|error| error.to_string())?;
        // Bilinear is plenty for a picture shown at this size, and several times cheaper than
        // the default Lanczos.
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        self.resizer.resize(&source, &mut target, &options).map_err(|error| error.to_string())
    }
}

/// A plane being written: its samples, rows packed.
struct PlaneMut<'a> {
    samples: &'a mut [u8],
    width: u32,
    height: u32,
}

/// `source` at half its width and height into `out` (exactly that many samples): each sample
/// the rounded mean of the 2×2 it covers, an odd last column or row averaged with itself.
/// `sums` is scratch. (Written here: a 2×2 mean is a few lines, and no imaging crate offers it
/// on a bare plane without its general filter's cost. Column sums first, then pairs of them,
/// which the compiler vectorises: 0.24 ms for a 1080p luma plane here.)
fn halve(source: Plane<'_>, out: &mut [u8], sums: &mut Vec<u16>) {
    let (width, height) = (source.width as usize, source.height as usize);
    let half_width = width.div_ceil(2);
    debug_assert_eq!(out.len(), half_width * height.div_ceil(2));
    sums.clear();
    sums.resize(width, 0);
    for (row, out) in out.chunks_exact_mut(half_width).enumerate() {
        let top = &source.samples[2 * row * width..][..width];
        let bottom = if 2 * row + 1 < height { &source.samples[(2 * row + 1) * width..][..width] } else { top };
        for ((sum, &top), &bottom) in sums.iter_mut().zip(top).zip(bottom) {
            *sum = u16::from(top) + u16::from(bottom);
        }
        for (out, pair) in out.iter_mut().zip(sums.chunks_exact(2)) {
            *out = ((pair[0] + pair[1] + 2) >> 2) as u8;
        }
        if width % 2 == 1 {
            out[half_width - 1] = ((sums[width - 1] * 2 + 2) >> 2) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_scaled_to_fit_the_viewer_with_their_aspect_kept() {
        assert_eq!(scaled_size(1920, 1080, (900, 600)), Some((900, 506)));
        assert_eq!(scaled_size(1920, 1080, (400, 400)), Some((400, 225)));
        assert_eq!(scaled_size(1280, 720, (1920, 1080)), None, "never enlarged");
        assert_eq!(scaled_size(1280, 720, (1280, 720)), None);
    }

    #[test]
    fn halving_averages_each_two_by_two_and_keeps_an_odd_edge() {
        // 5×3: two full pairs and an odd column per row pair, then an odd last row.
        #[rustfmt::skip]
        let samples = [
            10, 20, 30, 40, 50,
            30, 40, 50, 60, 70,
            100, 0, 255, 255, 7,
        ];
        let mut out = [0; 6];
        halve(Plane { samples: &samples, width: 5, height: 3 }, &mut out, &mut Vec::new());
        assert_eq!(out, [25, 45, 60, 50, 255, 7], "means rounded; the odd column and row stand alone");
    }
}
