//! Thumbnails for the review and report pages: the part of a photo the encoder sees (shorter side
//! resized, centre crop), and the same with a heat map blended over it on a fixed colour scale.

use crate::overlay::blend;
use anyhow::Context;
use image::{RgbImage, imageops};
use std::path::Path;

/// Side of a thumbnail, in pixels.
pub(crate) const THUMB_PX: u32 = 128;

/// The values a heat map's colours span: `low` and below is blue and nearly transparent, `high`
/// and above red. One scale per model, so that colours compare across images.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub(crate) struct HeatScale {
    /// The value drawn as the coldest colour.
    pub(crate) low: f32,
    /// The value drawn as the hottest colour.
    pub(crate) high: f32,
}

impl HeatScale {
    /// Where `value` sits on the scale, in `[0, 1]`.
    pub(crate) fn position(&self, value: f32) -> f32 {
        ((value - self.low) / (self.high - self.low).max(f32::EPSILON)).clamp(0.0, 1.0)
    }
}

/// The encoder's view of the image at `path` (shorter side resized to `side`, centre crop), the
/// geometry anomaly maps are computed on.
pub(crate) fn photo(path: &Path, side: u32) -> anyhow::Result<RgbImage> {
    let rgb = llb_data::load_rgb(path)?;
    let (w, h) = rgb.dimensions();
    anyhow::ensure!(w > 0 && h > 0, "{}: empty image", path.display());
    let scale = f64::from(side) / f64::from(w.min(h));
    let (rw, rh) = (
        ((f64::from(w) * scale).round() as u32).max(side),
        ((f64::from(h) * scale).round() as u32).max(side),
    );
    let resized = imageops::resize(&rgb, rw, rh, imageops::FilterType::Triangle);
    Ok(imageops::crop_imm(&resized, (rw - side) / 2, (rh - side) / 2, side, side).to_image())
}

/// `photo` with the square heat map `map` (`side × side` cells, row-major) upsampled bilinearly
/// and blended over it on `scale`.
pub(crate) fn heat(photo: &RgbImage, map: &[f32], side: usize, scale: HeatScale) -> RgbImage {
    let (w, h) = photo.dimensions();
    let at = |y: usize, x: usize| map[y.min(side - 1) * side + x.min(side - 1)];
    RgbImage::from_fn(w, h, |x, y| {
        // Cell centres sit at (i + 0.5) · w / side.
        let fx = ((x as f32 + 0.5) * side as f32 / w as f32 - 0.5).max(0.0);
        let fy = ((y as f32 + 0.5) * side as f32 / h as f32 - 0.5).max(0.0);
        let (x0, y0) = (fx as usize, fy as usize);
        let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
        let top = at(y0, x0) * (1.0 - tx) + at(y0, x0 + 1) * tx;
        let bottom = at(y0 + 1, x0) * (1.0 - tx) + at(y0 + 1, x0 + 1) * tx;
        blend(photo.get_pixel(x, y), scale.position(top * (1.0 - ty) + bottom * ty))
    })
}

/// Writes `image` as a JPEG (quality 85) at `path`, atomically.
pub(crate) fn write_jpeg(path: &Path, image: &RgbImage) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
        .encode_image(image)
        .with_context(|| format!("encoding {}", path.display()))?;
    llb_types::atomic::write(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_photo_is_the_centre_crop_of_the_resized_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        // 300×100: left third black, middle white, right third black.
        RgbImage::from_fn(300, 100, |x, _| {
            image::Rgb([if (100..200).contains(&x) { 255 } else { 0 }; 3])
        })
        .save(&path)
        .unwrap();
        let thumb = photo(&path, 32).unwrap();
        assert_eq!(thumb.dimensions(), (32, 32));
        assert!(thumb.pixels().all(|p| p[0] > 200), "only the white middle is left");
    }

    #[test]
    fn heat_colours_follow_the_fixed_scale() {
        let grey = RgbImage::from_pixel(16, 16, image::Rgb([128; 3]));
        let scale = HeatScale { low: 1.0, high: 2.0 };
        let cold = heat(&grey, &[0.5; 4], 2, scale);
        let hot = heat(&grey, &[9.0; 4], 2, scale);
        let (c, h) = (cold.get_pixel(8, 8), hot.get_pixel(8, 8));
        assert!(c[2] > c[0], "below the scale: blue-ish {c:?}");
        assert!(h[0] > h[1] + 60 && h[0] > h[2] + 60, "above the scale: red {h:?}");
        assert_eq!(scale.position(1.5), 0.5);
    }
}
