//! Decoding and preprocessing: decode, convert to RGB, resize the shorter side, centre-crop,
//! normalise into `[3, H, W]` f32; masks with nearest-neighbour into 0/1 bytes.
//!
//! The resizer is pinned: `fast_image_resize` with its bilinear convolution filter (which widens
//! its support when shrinking, like PIL's antialiased resize), used identically at training and
//! inference. Masks use its nearest-neighbour mode on the same geometry.

use crate::error::{Error, Result};
use crate::sample::Sample;
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage};
use llb_types::{InputSpec, Label, SampleId};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Geometry and normalisation of prepared images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// The shorter image side is resized to this many pixels (aspect ratio kept).
    pub resize_px: u32,
    /// Side of the square centre crop taken after resizing; at most `resize_px`.
    pub crop_px: u32,
    /// Per-channel mean (RGB) subtracted from values scaled to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB) the centred values are divided by.
    pub std: [f32; 3],
}

impl PreprocessConfig {
    /// ImageNet normalisation as used by torchvision's pretrained models
    /// (mean `[0.485, 0.456, 0.406]`, std `[0.229, 0.224, 0.225]`), with the given geometry.
    pub fn imagenet(resize_px: u32, crop_px: u32) -> Self {
        let (mean, std) = (InputSpec::IMAGENET_MEAN, InputSpec::IMAGENET_STD);
        Self { resize_px, crop_px, mean, std }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero size, a crop larger than the resize, or a non-positive or
    /// non-finite std / non-finite mean.
    pub fn validate(&self) -> Result<()> {
        if self.resize_px == 0 {
            return Err(Error::config("resize_px", self.resize_px, "a positive pixel count"));
        }
        if self.crop_px == 0 || self.crop_px > self.resize_px {
            return Err(Error::config(
                "crop_px",
                self.crop_px,
                format!("in 1..={}", self.resize_px),
            ));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::config("std", format!("{:?}", self.std), "finite and positive"));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::config("mean", format!("{:?}", self.mean), "finite"));
        }
        Ok(())
    }
}

/// A decoded, resized, cropped and normalised image.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedImage {
    /// The sample it came from.
    pub id: SampleId,
    /// `[3, height, width]` channel-major (CHW) f32 values, RGB, normalised with mean/std.
    pub data: Vec<f32>,
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
}

/// A ground-truth mask on the geometry of the prepared image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedMask {
    /// The sample it belongs to.
    pub id: SampleId,
    /// `[height, width]` row-major, 1 = defect, 0 = normal.
    pub data: Vec<u8>,
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
}

/// The outcome of a loop over many files: what succeeded, and each failure with its sample.
#[derive(Debug)]
pub struct Prepared<T> {
    /// Successful results, in input order.
    pub items: Vec<T>,
    /// Samples that failed, in input order, with their error (which names the file).
    pub failures: Vec<(SampleId, Error)>,
}

impl<T: Send> Prepared<T> {
    fn collect(results: Vec<(SampleId, Result<Option<T>>)>) -> Self {
        let mut out = Self { items: Vec::new(), failures: Vec::new() };
        for (id, result) in results {
            match result {
                Ok(Some(item)) => out.items.push(item),
                Ok(None) => {}
                Err(e) => out.failures.push((id, e)),
            }
        }
        out
    }
}

/// Decodes any supported image (grey, RGB, RGBA, 16-bit) into 8-bit RGB; alpha is dropped,
/// grey is replicated, 16-bit is scaled to 8 bits.
///
/// # Errors
/// As [`decode_image`].
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    Ok(decode_image(path)?.to_rgb8())
}

/// The longest image side llb decodes, in pixels.
pub const MAX_IMAGE_SIDE_PX: u32 = 16_384;

/// The most bytes one decoded image may take (the `image` crate's default, set explicitly).
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;

/// Decoded bytes allowed per byte of file, plus 1 MiB: deflate (PNG, TIFF) cannot expand data
/// more than 1032-fold, so a file whose header claims more pixels than its size can hold is
/// refused before the pixel buffer is allocated.
pub const MAX_IMAGE_EXPANSION: u64 = 2048;

/// Decodes an image file (PNG, JPEG, TIFF or BMP, told by content) within the decode limits:
/// sides of at most [`MAX_IMAGE_SIDE_PX`], at most [`MAX_IMAGE_BYTES`] decoded, and at most
/// [`MAX_IMAGE_EXPANSION`] decoded bytes per file byte (plus 1 MiB). Every image and mask llb
/// reads goes through here.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Decode`] for a corrupt, truncated or
/// over-limit file, [`Error::Parse`] for a header claiming more pixels than the file can hold;
/// each names the file.
pub fn decode_image(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    decode_with_limits(reader, len, path)
}

/// [`decode_image`] on bytes in memory; `path` only names them in errors.
#[cfg(test)]
pub(crate) fn decode_image_bytes(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    decode_with_limits(reader, bytes.len() as u64, path)
}

fn decode_with_limits<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
    file_len: u64,
    path: &Path,
) -> Result<DynamicImage> {
    let decode_err = |source| Error::Decode { path: path.to_path_buf(), source };
    let mut reader = reader.with_guessed_format().map_err(|e| Error::io(path, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE_PX);
    limits.max_image_height = Some(MAX_IMAGE_SIDE_PX);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let claimed = image::ImageDecoder::total_bytes(&decoder);
    let allowed = file_len.saturating_mul(MAX_IMAGE_EXPANSION).saturating_add(1 << 20);
    if claimed > allowed {
        let (w, h) = image::ImageDecoder::dimensions(&decoder);
        return Err(Error::parse(
            path,
            format!(
                "header claims {w}×{h} pixels ({claimed} bytes decoded), more than a {file_len}-byte file can hold"
            ),
        ));
    }
    DynamicImage::from_decoder(decoder).map_err(decode_err)
}

/// Prepares one image file: decode, RGB, resize the shorter side to `resize_px` (bilinear),
/// centre-crop `crop_px`, scale to `[0, 1]`, subtract mean, divide by std.
///
/// # Errors
/// [`Error::Config`] for an invalid config; [`Error::Io`] or [`Error::Decode`] naming the file.
pub fn prepare_image(
    id: SampleId,
    path: &Path,
    config: &PreprocessConfig,
) -> Result<PreparedImage> {
    config.validate()?;
    let rgb = load_rgb(path)?;
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::TooSmall {
            path: path.to_path_buf(),
            width: w,
            height: h,
            reason: "empty image".into(),
        });
    }
    let (rw, rh) = resized_dims(w, h, config.resize_px);
    let resized = resize(
        rgb.into_raw(),
        (w, h),
        (rw, rh),
        PixelType::U8x3,
        ResizeAlg::Convolution(FilterType::Bilinear),
    )
    .map_err(|message| Error::parse(path, message))?;
    let (x0, y0) = ((rw - config.crop_px) / 2, (rh - config.crop_px) / 2);
    let side = config.crop_px as usize;
    let plane = side * side;
    let mut data = vec![0.0f32; 3 * plane];
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * config.std[c]));
    let offset: [f32; 3] = std::array::from_fn(|c| config.mean[c] / config.std[c]);
    for y in 0..side {
        let row = ((y0 as usize + y) * rw as usize + x0 as usize) * 3;
        for x in 0..side {
            for c in 0..3 {
                data[c * plane + y * side + x] =
                    f32::from(resized[row + 3 * x + c]) * scale[c] - offset[c];
            }
        }
    }
    Ok(PreparedImage { id, data, height: config.crop_px, width: config.crop_px })
}

/// Prepares the mask of a sample on the geometry of [`prepare_image`] (nearest-neighbour, any
/// non-zero mask pixel is a defect).
///
/// Returns an all-zero mask for a sample with no mask file whose label is [`Label::Normal`], and
/// `None` for a sample with no mask file and any other label (no pixel ground truth).
///
/// # Errors
/// [`Error::MaskSizeMismatch`] when the mask and its image differ in size; [`Error::Io`] or
/// [`Error::Decode`] naming the file; [`Error::Config`] for an invalid config.
pub fn prepare_mask(sample: &Sample, config: &PreprocessConfig) -> Result<Option<PreparedMask>> {
    config.validate()?;
    let side = config.crop_px;
    let Some(mask_path) = &sample.mask_path else {
        return Ok((sample.label == Some(Label::Normal)).then(|| PreparedMask {
            id: sample.id.clone(),
            data: vec![0; (side * side) as usize],
            height: side,
            width: side,
        }));
    };
    let mask = decode_image(mask_path)?.to_luma32f();
    let (w, h) = mask.dimensions();
    let (iw, ih) = image::image_dimensions(&sample.image_path)
        .map_err(|source| Error::Decode { path: sample.image_path.clone(), source })?;
    if w == 0 || h == 0 {
        return Err(Error::TooSmall {
            path: mask_path.clone(),
            width: w,
            height: h,
            reason: "empty mask".into(),
        });
    }
    if (w, h) != (iw, ih) {
        return Err(Error::MaskSizeMismatch {
            mask: mask_path.clone(),
            image: sample.image_path.clone(),
            mask_width: w,
            mask_height: h,
            image_width: iw,
            image_height: ih,
        });
    }
    let binary: Vec<u8> = mask.pixels().map(|p| u8::from(p.0[0] > 0.0)).collect();
    let (rw, rh) = resized_dims(w, h, config.resize_px);
    let resized = resize(binary, (w, h), (rw, rh), PixelType::U8, ResizeAlg::Nearest)
        .map_err(|m| Error::parse(mask_path, m))?;
    let (x0, y0) = ((rw - side) / 2, (rh - side) / 2);
    let mut data = Vec::with_capacity((side * side) as usize);
    for y in 0..side {
        let start = ((y0 + y) * rw + x0) as usize;
        data.extend_from_slice(&resized[start..start + side as usize]);
    }
    Ok(Some(PreparedMask { id: sample.id.clone(), data, height: side, width: side }))
}

/// [`prepare_image`] over many samples in parallel (rayon's global pool). One bad file does not
/// stop the loop: it is reported in [`Prepared::failures`] and the caller decides whether to abort.
///
/// # Errors
/// [`Error::Config`] for an invalid config (before any file is read).
pub fn prepare_images(
    samples: &[Sample],
    config: &PreprocessConfig,
) -> Result<Prepared<PreparedImage>> {
    let _span = tracing::info_span!("prepare_images", n_samples = samples.len()).entered();
    config.validate()?;
    let results = samples
        .par_iter()
        .map(|s| (s.id.clone(), prepare_image(s.id.clone(), &s.image_path, config).map(Some)))
        .collect();
    let prepared = Prepared::collect(results);
    tracing::debug!(
        n_ok = prepared.items.len(),
        n_failed = prepared.failures.len(),
        "prepared images"
    );
    Ok(prepared)
}

/// [`prepare_mask`] over many samples in parallel; samples without pixel ground truth are
/// skipped, failures are reported per sample.
///
/// # Errors
/// [`Error::Config`] for an invalid config (before any file is read).
pub fn prepare_masks(
    samples: &[Sample],
    config: &PreprocessConfig,
) -> Result<Prepared<PreparedMask>> {
    let _span = tracing::info_span!("prepare_masks", n_samples = samples.len()).entered();
    config.validate()?;
    let results = samples.par_iter().map(|s| (s.id.clone(), prepare_mask(s, config))).collect();
    Ok(Prepared::collect(results))
}

/// Size after resizing the shorter side to `short` (the longer side rounded, never below `short`).
fn resized_dims(w: u32, h: u32, short: u32) -> (u32, u32) {
    let scale = |long: u32, base: u32| {
        ((u64::from(long) * u64::from(short) + u64::from(base) / 2) / u64::from(base))
            .max(u64::from(short)) as u32
    };
    if w <= h { (short, scale(h, w)) } else { (scale(w, h), short) }
}

/// Resizes a packed buffer with the pinned resizer; returns the input when sizes already match.
fn resize(
    buf: Vec<u8>,
    (w, h): (u32, u32),
    (rw, rh): (u32, u32),
    pixel: PixelType,
    alg: ResizeAlg,
) -> std::result::Result<Vec<u8>, String> {
    if (w, h) == (rw, rh) {
        return Ok(buf);
    }
    let src = Image::from_vec_u8(w, h, buf, pixel).map_err(|e| e.to_string())?;
    let mut dst = Image::new(rw, rh, pixel);
    let options = ResizeOptions::new().resize_alg(alg);
    Resizer::new().resize(&src, &mut dst, &options).map_err(|e| e.to_string())?;
    Ok(dst.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample(dir: &Path, name: &str) -> Sample {
        Sample::unlabelled(SampleId::new(name), dir.join(name))
    }

    /// Prepares `image` (written as PNG) and compares shape and the first value of each channel.
    fn check(image: DynamicImage, config: &PreprocessConfig, expected_first: [f32; 3]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        image.save(&path).unwrap();
        let p = prepare_image(SampleId::new("x.png"), &path, config).unwrap();
        let side = config.crop_px as usize;
        assert_eq!(
            (p.height, p.width, p.data.len()),
            (config.crop_px, config.crop_px, 3 * side * side)
        );
        for (c, want) in expected_first.iter().enumerate() {
            assert!(
                (p.data[c * side * side] - want).abs() < 1e-5,
                "channel {c}: {}",
                p.data[c * side * side]
            );
        }
    }

    #[test]
    fn solid_images_of_every_pixel_format_normalise_to_the_formula() {
        let config = PreprocessConfig::imagenet(8, 6);
        let norm = |v: [f32; 3]| -> [f32; 3] {
            std::array::from_fn(|c| (v[c] - config.mean[c]) / config.std[c])
        };
        let rgb = image::RgbImage::from_pixel(16, 12, image::Rgb([255, 0, 51]));
        check(DynamicImage::ImageRgb8(rgb), &config, norm([1.0, 0.0, 0.2]));
        let grey = image::GrayImage::from_pixel(10, 10, image::Luma([102]));
        check(DynamicImage::ImageLuma8(grey), &config, norm([0.4; 3]));
        let rgba = image::RgbaImage::from_pixel(9, 20, image::Rgba([0, 255, 0, 7]));
        check(DynamicImage::ImageRgba8(rgba), &config, norm([0.0, 1.0, 0.0]));
        let deep = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(
            8,
            8,
            image::Luma([65535]),
        );
        check(DynamicImage::ImageLuma16(deep), &config, norm([1.0; 3]));
    }

    #[test]
    fn layout_is_chw_and_the_crop_is_centred() {
        // 20x10 image: left half black, right half white; resized to 10 px high (20x10 stays),
        // centre crop of 6 takes columns 7..13, so columns 0..3 of the crop are black.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("halves.png");
        let img = image::RgbImage::from_fn(20, 10, |x, _| {
            image::Rgb(if x < 10 { [0; 3] } else { [255; 3] })
        });
        img.save(&path).unwrap();
        let config = PreprocessConfig { resize_px: 10, crop_px: 6, mean: [0.0; 3], std: [1.0; 3] };
        let p = prepare_image(SampleId::new("h"), &path, &config).unwrap();
        let row: Vec<f32> = p.data[6 * 6 * 2..6 * 6 * 2 + 6].to_vec();
        assert_eq!(row, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn masks_use_nearest_neighbour_on_the_image_geometry() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample(dir.path(), "img.png");
        image::RgbImage::new(16, 16).save(&s.image_path).unwrap();
        let mask_path = dir.path().join("mask.png");
        image::GrayImage::from_fn(16, 16, |x, _| image::Luma([if x < 8 { 255 } else { 0 }]))
            .save(&mask_path)
            .unwrap();
        s.mask_path = Some(mask_path);
        let config = PreprocessConfig::imagenet(8, 8);
        let m = prepare_mask(&s, &config).unwrap().unwrap();
        assert_eq!(&m.data[..8], &[1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(m.data.iter().map(|&v| usize::from(v)).sum::<usize>(), 32);

        let mut normal = sample(dir.path(), "img.png");
        assert_eq!(prepare_mask(&normal, &config).unwrap(), None);
        normal.label = Some(Label::Normal);
        assert_eq!(prepare_mask(&normal, &config).unwrap().unwrap().data, vec![0; 64]);
    }

    #[test]
    fn mask_of_another_size_is_an_error_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample(dir.path(), "img.png");
        image::RgbImage::new(16, 16).save(&s.image_path).unwrap();
        let mask_path = dir.path().join("mask.png");
        image::GrayImage::new(16, 15).save(&mask_path).unwrap();
        s.mask_path = Some(mask_path.clone());
        let err = prepare_mask(&s, &PreprocessConfig::imagenet(8, 8)).unwrap_err();
        assert!(
            matches!(&err, Error::MaskSizeMismatch { mask, mask_height: 15, image_height: 16, .. } if *mask == mask_path),
            "{err}"
        );
        assert!(err.to_string().contains("img.png"), "{err}");
    }

    #[test]
    fn bad_files_are_reported_per_sample_and_do_not_stop_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let good = sample(dir.path(), "good.png");
        image::RgbImage::new(12, 12).save(&good.image_path).unwrap();
        let truncated = sample(dir.path(), "truncated.png");
        let bytes = std::fs::read(&good.image_path).unwrap();
        std::fs::write(&truncated.image_path, &bytes[..bytes.len() / 2]).unwrap();
        let garbage = sample(dir.path(), "garbage.png");
        std::fs::write(&garbage.image_path, b"this is not a png").unwrap();
        let missing = sample(dir.path(), "missing.png");
        let samples = [truncated, good, missing, garbage];
        let out = prepare_images(&samples, &PreprocessConfig::imagenet(8, 8)).unwrap();
        assert_eq!(out.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["good.png"]);
        let failed: Vec<(&str, PathBuf)> = out
            .failures
            .iter()
            .map(|(id, e)| match e {
                Error::Decode { path, .. } | Error::Io { path, .. } => (id.as_str(), path.clone()),
                other => panic!("unexpected error {other}"),
            })
            .collect();
        let names: Vec<&str> = failed.iter().map(|(id, _)| *id).collect();
        assert_eq!(names, ["truncated.png", "missing.png", "garbage.png"]);
        assert!(failed.iter().all(|(id, path)| path.ends_with(id)));
    }

    #[test]
    fn invalid_configs_are_rejected_before_reading() {
        fn check(config: PreprocessConfig, field: &str) {
            let err = prepare_images(&[], &config).unwrap_err();
            assert!(matches!(&err, Error::Config { field: f, .. } if *f == field), "{err}");
        }
        check(PreprocessConfig::imagenet(0, 0), "resize_px");
        check(PreprocessConfig::imagenet(8, 9), "crop_px");
        check(PreprocessConfig { std: [1.0, 0.0, 1.0], ..PreprocessConfig::imagenet(8, 8) }, "std");
        check(PreprocessConfig { mean: [f32::NAN; 3], ..PreprocessConfig::imagenet(8, 8) }, "mean");
    }

    #[test]
    fn resized_dims_keep_the_aspect_ratio() {
        assert_eq!(resized_dims(1024, 768, 256), (341, 256));
        assert_eq!(resized_dims(100, 300, 10), (10, 30));
        assert_eq!(resized_dims(5, 5, 7), (7, 7));
    }
}
