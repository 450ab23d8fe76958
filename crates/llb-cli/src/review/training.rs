//! `review.html`: the training images ranked by fused stage-1 score, with thumbnails, heat maps
//! of the sub-models that did not train on them, every sub-model's score, the verdicts and the
//! rule, for a person to confirm or overrule (see `review.js`).

use super::data::{ReviewData, ReviewInput, heat_scale};
use super::maps::{MAP_SIDE, ReviewMaps};
use super::thumbs::{self, THUMB_PX};
use anyhow::Context;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The page's file name inside the output folder.
pub(crate) const REVIEW_PAGE: &str = "review.html";
/// The folder of its thumbnails.
const REVIEW_DIR: &str = "review";

/// Writes `review.html` and its thumbnails (`review/img/`, `review/heat/`) into `out`, replacing
/// those of an earlier run. `maps` are the out-of-subset heat maps, when stage 1 kept them.
/// Returns the page's path.
pub(crate) fn write_review_page(
    out: &Path,
    input: &ReviewInput<'_>,
    maps: Option<&ReviewMaps>,
) -> anyhow::Result<PathBuf> {
    let _span = tracing::info_span!("review_page", n_samples = input.table.n_samples()).entered();
    let scale = maps.and_then(|m| heat_scale(input.table, input.rule_selection, m.typical_level()));
    let mut data = ReviewData::new(input, scale)?;
    let dir = out.join(REVIEW_DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    for sub in ["img", "heat"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let paths: std::collections::BTreeMap<String, &Path> =
        input.samples.iter().map(|s| (s.id.to_string(), s.image_path.as_path())).collect();
    let written: Vec<(u8, u8)> = data
        .rows
        .par_iter()
        .enumerate()
        .map(|(i, row)| {
            let Some(path) = paths.get(&row.id) else { return (0, 0) };
            let photo = match thumbs::photo(path, THUMB_PX) {
                Ok(photo) => photo,
                Err(e) => {
                    tracing::warn!(id = %row.id, "no thumbnail: {e:#}");
                    return (0, 0);
                }
            };
            let name = format!("{i:05}.jpg");
            let img = thumbs::write_jpeg(&dir.join("img").join(&name), &photo);
            let map = maps.and_then(|m| m.mean(&llb_types::SampleId::new(row.id.as_str())));
            let heat = match (map, scale) {
                (Some(map), Some(scale)) => {
                    let heat = thumbs::heat(&photo, &map, MAP_SIDE, scale);
                    thumbs::write_jpeg(&dir.join("heat").join(&name), &heat).map(|_| 1)
                }
                _ => Ok(0),
            };
            match (img, heat) {
                (Ok(()), Ok(heat)) => (1, heat),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(id = %row.id, "thumbnail not written: {e:#}");
                    (0, 0)
                }
            }
        })
        .collect();
    for (row, (img, heat)) in data.rows.iter_mut().zip(&written) {
        (row.img, row.heat) = (*img, *heat);
    }
    data.maps_note = maps_note(maps, &data);
    let n_missing = written.iter().filter(|(img, _)| *img == 0).count();
    if n_missing > 0 {
        tracing::warn!(n_missing, "review page: images without a thumbnail");
    }
    let page = super::page::html(
        &format!("llb review: {}", data.title),
        &data,
        include_str!("review.js"),
    )?;
    let path = out.join(REVIEW_PAGE);
    llb_types::atomic::write(&path, page.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Says why heat maps are missing, when they are.
fn maps_note(maps: Option<&ReviewMaps>, data: &ReviewData) -> Option<String> {
    let Some(maps) = maps else {
        return Some("No heat maps: this page was made from scores alone.".into());
    };
    if data.heat.is_none() {
        return Some(
            "No heat maps: the image at the cut has no positive score to scale them by.".into(),
        );
    }
    let resumed = maps.blocks_without_maps();
    if !resumed.is_empty() {
        let list: Vec<String> = resumed.iter().map(|b| format!("submodel-{b}")).collect();
        return Some(format!(
            "Heat maps leave out {}: their scores were reused from a stage-1 cache written by an \
             older llb, which kept no maps (delete the cache folder to recompute them).",
            list.join(", ")
        ));
    }
    None
}
