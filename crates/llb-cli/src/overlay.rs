//! Heat-map overlays: an anomaly map blended over its image, for people to look at.

use anyhow::Context;
use image::{Rgb, RgbImage, imageops};
use std::path::Path;

/// Blends `map` (`[size, size]` row-major, higher = more anomalous) over the image at `image`,
/// resized to `size`, and writes a PNG to `out` atomically. Map values are scaled to colours
/// between `low` (blue, transparent) and `high` (red, opaque), so overlays of one model share a
/// scale.
pub(crate) fn overlay_png(
    image: &Path,
    map: &[f32],
    size: u32,
    low: f32,
    high: f32,
    out: &Path,
) -> anyhow::Result<()> {
    let base = llb_data::load_rgb(image)?;
    let base = imageops::resize(&base, size, size, imageops::FilterType::Triangle);
    let mut canvas = RgbImage::new(size, size);
    let span = (high - low).max(f32::EPSILON);
    for (x, y, pixel) in canvas.enumerate_pixels_mut() {
        let t = ((map[(y * size + x) as usize] - low) / span).clamp(0.0, 1.0);
        *pixel = blend(base.get_pixel(x, y), t);
    }
    let mut bytes = Vec::new();
    canvas
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .context("encoding the overlay PNG")?;
    llb_types::atomic::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// A photo pixel under the heat colour of `t` in `[0, 1]` (0 = the scale's low end, 1 = its
/// high end): the "jet" colour, more opaque the hotter it is.
pub(crate) fn blend(under: &Rgb<u8>, t: f32) -> Rgb<u8> {
    let colour = jet(t);
    let alpha = 0.15 + 0.6 * t;
    Rgb(std::array::from_fn(|c| {
        (under[c] as f32 * (1.0 - alpha) + colour[c] * alpha).round() as u8
    }))
}

/// The "jet" colour map: blue → cyan → yellow → red for `t` in `[0, 1]`.
fn jet(t: f32) -> [f32; 3] {
    let channel = |centre: f32| (1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0) * 255.0;
    [channel(3.0), channel(2.0), channel(1.0)]
}

#[cfg(test)]
mod tests {
    use super::jet;

    #[test]
    fn jet_ends() {
        assert_eq!(jet(0.0), [0.0, 0.0, 127.5]);
        assert_eq!(jet(1.0), [127.5, 0.0, 0.0]);
    }
}
