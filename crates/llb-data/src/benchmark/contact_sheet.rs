//! A contact sheet of benchmark examples: per category, the first normal test tiles and the first
//! tiles of each defect type with their masks outlined in red.

use crate::error::{Error, Result};
use crate::preprocess::load_rgb;
use crate::sample::{list_dirs, list_images};
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use std::path::Path;

const GAP_PX: u32 = 4;
const OUTLINE: [u8; 3] = [255, 32, 32];

/// Renders a grid from an MVTec-layout tree under `root`: one row per category (in the given
/// order), columns: the first `per_folder` images of `test/good`, then the first `per_folder` of
/// each defect folder of `test/` in name order (fewer when a folder holds fewer), each cell
/// scaled to `cell_px`² with bilinear filtering, on a white background with 4 px gaps. Mask
/// outlines (mask pixels with a 4-neighbour outside the mask, thickened to 2 px) are painted
/// before scaling. Rows may differ in length (categories of benchmark v2 have 3–4 defect types).
///
/// # Errors
/// [`Error::Empty`] for a test folder without images, [`Error::Io`] / [`Error::Decode`] naming
/// the file, [`Error::Config`] for no category, `cell_px` = 0 or `per_folder` = 0.
pub fn render_contact_sheet(
    root: &Path,
    categories: &[String],
    cell_px: u32,
    per_folder: usize,
) -> Result<RgbImage> {
    if categories.is_empty() {
        return Err(Error::config("categories", "[]", "at least one category"));
    }
    if cell_px == 0 {
        return Err(Error::config("cell_px", cell_px, "a positive pixel count"));
    }
    if per_folder == 0 {
        return Err(Error::config("per_folder", per_folder, "at least one image per folder"));
    }
    let mut rows = Vec::new();
    for category in categories {
        let test = root.join(category).join("test");
        let mut cells = Vec::new();
        for dir in list_dirs(&test)? {
            let kind = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let images = list_images(&dir)?;
            if images.is_empty() {
                return Err(Error::Empty { path: dir.clone() });
            }
            for image in images.iter().take(per_folder) {
                let mut tile = load_rgb(image)?;
                if kind != "good" {
                    let stem = image.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                    let mask_path = root
                        .join(category)
                        .join("ground_truth")
                        .join(&kind)
                        .join(format!("{stem}_mask.png"));
                    outline(&mut tile, &load_rgb(&mask_path)?);
                }
                cells.push((kind == "good", scale(&tile, cell_px)?));
            }
        }
        cells.sort_by_key(|(good, _)| !*good);
        rows.push(cells.into_iter().map(|(_, c)| c).collect::<Vec<_>>());
    }
    let n_cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let step = cell_px + GAP_PX;
    let mut sheet = RgbImage::from_pixel(
        GAP_PX + n_cols * step,
        GAP_PX + rows.len() as u32 * step,
        image::Rgb([255; 3]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            image::imageops::replace(
                &mut sheet,
                cell,
                i64::from(GAP_PX + c as u32 * step),
                i64::from(GAP_PX + r as u32 * step),
            );
        }
    }
    Ok(sheet)
}

fn outline(tile: &mut RgbImage, mask: &RgbImage) {
    let (w, h) = mask.dimensions();
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < i64::from(w)
            && y < i64::from(h)
            && mask.get_pixel(x as u32, y as u32).0[0] > 127
    };
    for y in 0..i64::from(h) {
        for x in 0..i64::from(w) {
            let edge = inside(x, y)
                && [(-1, 0), (1, 0), (0, -1), (0, 1)]
                    .iter()
                    .any(|(dx, dy)| !inside(x + dx, y + dy));
            if edge {
                for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (px, py) = (
                        (x + ox).min(i64::from(w) - 1) as u32,
                        (y + oy).min(i64::from(h) - 1) as u32,
                    );
                    if px < tile.width() && py < tile.height() {
                        tile.put_pixel(px, py, image::Rgb(OUTLINE));
                    }
                }
            }
        }
    }
}

fn scale(tile: &RgbImage, cell_px: u32) -> Result<RgbImage> {
    let (w, h) = tile.dimensions();
    let src = Image::from_vec_u8(w, h, tile.as_raw().clone(), PixelType::U8x3)
        .map_err(|e| Error::config("cell image", format!("{w}x{h}"), e.to_string()))?;
    let mut dst = Image::new(cell_px, cell_px, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| Error::config("cell_px", cell_px, e.to_string()))?;
    Ok(RgbImage::from_raw(cell_px, cell_px, dst.into_vec())
        .unwrap_or_else(|| RgbImage::new(cell_px, cell_px)))
}
