//! Texture photos (or a synthetic stand-in) and the crops that become tiles.
//!
//! Train/test split of a texture ([`TileSource`]): with disjoint halves, training tiles are cropped
//! from the top half of the photo (rows `0..H/2`) and test tiles (normal and defective) from the
//! bottom half (rows `H/2..H`), so test normals are never seen in training; with the whole
//! photo, every tile may come from anywhere. Each crop gets one of the 8 flips / 90° rotations.

use super::config::TileSource;
use super::math::{Tile, tile_rng};
use crate::error::{Error, Result};
use crate::preprocess::load_rgb;
use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A named texture image, the source of one benchmark category.
#[derive(Clone, Debug, PartialEq)]
pub struct Texture {
    /// Category name: lower-case ASCII letters, digits, `_` or `-`.
    pub name: String,
    /// The photo, as 8-bit RGB (grey photos replicated to 3 channels).
    pub image: RgbImage,
}

/// Loads a texture photo (any format [`load_rgb`] reads).
///
/// # Errors
/// [`Error::Io`] or [`Error::Decode`] naming the file.
pub fn load_texture(name: &str, path: &Path) -> Result<Texture> {
    Ok(Texture { name: name.to_string(), image: load_rgb(path)? })
}

/// A rectangle of a photo in pixels: columns `x..x + width`, rows `y..y + height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PixelRect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// A benchmark category's texture: a photo file and the part of it that holds only the texture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TexturePhoto {
    /// The category name.
    pub name: &'static str,
    /// The photo's path inside the llb cache, as `llb fetch` stores it (e.g.
    /// `images/mvtb/walls-l.png`); the CLI matches it against the asset catalogue.
    pub cache_path: &'static str,
    /// The texture part of the photo; `None` for photos that are all texture.
    pub crop: Option<PixelRect>,
}

/// The five textures of benchmark v2, in name order: scikit-image's `brick`, `grass` and
/// `gravel` (512×512 grey, whole) and two scene photos of the `mvtb-data` wheel cropped to their
/// texture, picked by eye: `paving`, the herringbone paving in the lower part of `walls-l.png`
/// (3264×698 of 3264×2448, below the wall and the down-pipe's shadow), and `slate`, the slate
/// roof in the lower part of `roof.png` (1559×618 of 2009×1668, right of the roof's edge and
/// below the turret).
pub const BENCHMARK_V2_TEXTURES: [TexturePhoto; 5] = [
    TexturePhoto { name: "brick", cache_path: "images/textures/brick.png", crop: None },
    TexturePhoto { name: "grass", cache_path: "images/textures/grass.png", crop: None },
    TexturePhoto { name: "gravel", cache_path: "images/textures/gravel.png", crop: None },
    TexturePhoto {
        name: "paving",
        cache_path: "images/mvtb/walls-l.png",
        crop: Some(PixelRect { x: 0, y: 1750, width: 3264, height: 698 }),
    },
    TexturePhoto {
        name: "slate",
        cache_path: "images/mvtb/roof.png",
        crop: Some(PixelRect { x: 450, y: 1050, width: 1559, height: 618 }),
    },
];

/// Loads `photo` from `path` and crops it to its texture part.
///
/// # Errors
/// [`Error::Io`] or [`Error::Decode`] naming the file; [`Error::TooSmall`] when the crop does not
/// fit in the photo.
pub fn load_texture_photo(photo: &TexturePhoto, path: &Path) -> Result<Texture> {
    let image = load_rgb(path)?;
    let image = match photo.crop {
        None => image,
        Some(r) => {
            let (w, h) = image.dimensions();
            let fits = u64::from(r.x) + u64::from(r.width) <= u64::from(w)
                && u64::from(r.y) + u64::from(r.height) <= u64::from(h);
            if !fits || r.width == 0 || r.height == 0 {
                return Err(Error::TooSmall {
                    path: path.to_path_buf(),
                    width: w,
                    height: h,
                    reason: format!("does not hold the crop {r:?} of texture `{}`", photo.name),
                });
            }
            image::imageops::crop_imm(&image, r.x, r.y, r.width, r.height).to_image()
        }
    };
    Ok(Texture { name: photo.name.to_string(), image })
}

/// A deterministic grey texture made in code (multi-octave value noise plus a faint grating), a
/// stand-in for photos in tests: the same `seed` and size give the same pixels on every machine.
pub fn synthetic_texture(name: &str, seed: u64, width: u32, height: u32) -> Texture {
    let mut rng = tile_rng(seed, name, 7, 0);
    let (w, h) = (width as usize, height as usize);
    let mut value = vec![0.0f32; w * h];
    for (octave, cell) in [32usize, 16, 8, 4].into_iter().enumerate() {
        let (gw, gh) = (w / cell + 2, h / cell + 2);
        let grid: Vec<f32> = (0..gw * gh).map(|_| rng.random::<f32>()).collect();
        let amplitude = 0.5f32.powi(octave as i32);
        for y in 0..h {
            let (gy, fy) = (y / cell, smooth((y % cell) as f32 / cell as f32));
            for x in 0..w {
                let (gx, fx) = (x / cell, smooth((x % cell) as f32 / cell as f32));
                let at = |i: usize, j: usize| grid[(gy + j) * gw + gx + i];
                let top = at(0, 0) + (at(1, 0) - at(0, 0)) * fx;
                let bottom = at(0, 1) + (at(1, 1) - at(0, 1)) * fx;
                value[y * w + x] += amplitude * (top + (bottom - top) * fy);
            }
        }
    }
    let pixels = value
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            let stripe = if (i % w / 6 + i / w / 11) % 2 == 0 { 0.06 } else { 0.0 };
            let g = ((v / 1.875) * 0.8 + 0.1 + stripe).clamp(0.0, 1.0);
            let g = (g * 255.0 + 0.5).floor() as u8;
            [g, g, g]
        })
        .collect();
    let image =
        RgbImage::from_raw(width, height, pixels).unwrap_or_else(|| RgbImage::new(width, height));
    Texture { name: name.to_string(), image }
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Which half of the texture a crop comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    /// Rows `0..H/2`: training tiles.
    Train,
    /// Rows `H/2..H`: test tiles and cut-paste donors.
    Test,
}

/// Fails unless the texture can hold a tile (in each half, for disjoint halves) and has a valid
/// name.
pub(crate) fn check_texture(texture: &Texture, tile: u32, source: TileSource) -> Result<()> {
    let valid = !texture.name.is_empty()
        && texture
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        return Err(Error::config(
            "texture name",
            &texture.name,
            "lower-case ASCII letters, digits, `_` or `-`",
        ));
    }
    let (w, h) = texture.image.dimensions();
    let usable_h = if source == TileSource::DisjointHalves { h / 2 } else { h };
    if w < tile || usable_h < tile {
        return Err(Error::TooSmall {
            path: texture.name.clone().into(),
            width: w,
            height: h,
            reason: match source {
                TileSource::DisjointHalves => {
                    format!(
                        "needs width >= {tile} and height >= {} for disjoint train/test halves",
                        2 * tile
                    )
                }
                TileSource::WholePhoto => format!("needs width and height >= {tile}"),
            },
        });
    }
    Ok(())
}

/// A random `size`² crop of the texture's `region` (the whole photo with
/// [`TileSource::WholePhoto`]), with a random flip / 90° rotation.
pub(crate) fn crop_tile(
    texture: &Texture,
    region: Region,
    source: TileSource,
    size: u32,
    rng: &mut impl Rng,
) -> Tile {
    let (w, h) = texture.image.dimensions();
    let half = h / 2;
    let (y_lo, y_hi) = match (source, region) {
        (TileSource::WholePhoto, _) => (0, h - size),
        (TileSource::DisjointHalves, Region::Train) => (0, half - size),
        (TileSource::DisjointHalves, Region::Test) => (half, h - size),
    };
    let x0 = rng.random_range(0..=w - size);
    let y0 = rng.random_range(y_lo..=y_hi);
    let transform = rng.random_range(0..8u8);
    crop_at(texture, (x0, y0), transform, size)
}

/// The `size`² crop of the texture at `(x0, y0)` under one of the 8 flips / 90° rotations.
///
/// # Panics
/// When the crop does not fit in the texture (a programmer error: callers draw `x0`, `y0` in
/// range).
pub(crate) fn crop_at(texture: &Texture, (x0, y0): (u32, u32), transform: u8, size: u32) -> Tile {
    let n = size as usize;
    let mut data = vec![0.0f32; 3 * n * n];
    for y in 0..n {
        for x in 0..n {
            let (sx, sy) = dihedral(x, y, n, transform);
            let p = texture.image.get_pixel(x0 + sx as u32, y0 + sy as u32).0;
            let i = 3 * (y * n + x);
            for c in 0..3 {
                data[i + c] = f32::from(p[c]) / 255.0;
            }
        }
    }
    Tile { size: n, data }
}

/// Source coordinates of `(x, y)` under one of the 8 symmetries of the square.
fn dihedral(x: usize, y: usize, n: usize, t: u8) -> (usize, usize) {
    let (x, y) = if t & 4 != 0 { (n - 1 - x, y) } else { (x, y) };
    match t & 3 {
        0 => (x, y),
        1 => (y, n - 1 - x),
        2 => (n - 1 - x, n - 1 - y),
        _ => (n - 1 - y, x),
    }
}
