//! `report.html`: `llb predict`'s test images sorted by anomaly score, with their heat-map
//! overlays on the model's fixed colour scale, the threshold and the verdicts, and for
//! memory-bank models (PatchCore, SoftPatch) each anomalous image's nearest training patch: the
//! "normal" its most anomalous patch was compared with (see `report.js`).

use super::thumbs::{self, HeatScale};
use anyhow::Context;
use llb_detect::NearestTrainingPatch;
use llb_pipeline::{Extracted, FittedDetector};
use llb_purify::{FusedScores, Histogram, HistogramBin};
use llb_types::SampleId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The page's file name inside `llb predict`'s output folder.
pub(crate) const REPORT_PAGE: &str = "report.html";
/// The file in a model folder that maps training ids to image paths (JSON object).
pub(crate) const TRAINING_IMAGES: &str = "training_images.json";
/// Side of a training-image thumbnail in the report, in pixels.
const TRAIN_THUMB_PX: u32 = 170;

/// One scored test image.
#[derive(Serialize)]
pub(crate) struct ReportRow {
    /// Sample id.
    pub(crate) id: String,
    /// Image anomaly score.
    pub(crate) score: f32,
    /// `true` when the score is above the threshold.
    pub(crate) anomalous: bool,
    /// The overlay, relative to the page.
    pub(crate) overlay: String,
    /// The nearest training patch of its most anomalous patch (anomalous images of memory-bank
    /// models).
    pub(crate) nearest: Option<Nearest>,
}

/// The nearest training patch, as the page shows it.
#[derive(Serialize)]
pub(crate) struct Nearest {
    /// The test image's most anomalous cell `(row, column)` and the grid `(h, w)`.
    cell: (usize, usize),
    grid: (usize, usize),
    distance: f32,
    /// The training image and cell, when the model recorded provenance.
    source_id: Option<String>,
    source_cell: Option<(usize, usize)>,
    /// The training image's thumbnail, relative to the page, when its file was found.
    image: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportData {
    title: String,
    detector: String,
    threshold: f32,
    heat: HeatScale,
    /// `recorded`, `none` (saved before provenance existed) or `not-memory-bank`.
    provenance: &'static str,
    n: usize,
    n_anomalous: usize,
    hist: Vec<HistogramBin>,
    rows: Vec<ReportRow>,
}

/// For the images `ids` of `features`, their nearest training patches; `None` for models without
/// a memory bank.
pub(crate) fn nearest_patches(
    model: &FittedDetector,
    features: &Extracted,
    ids: &[SampleId],
) -> anyhow::Result<Option<Vec<NearestTrainingPatch>>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(16) {
        let layers = features.subset(chunk)?.layers;
        out.extend(match model {
            FittedDetector::Patchcore(m) => m.nearest_training_patches(&layers)?,
            FittedDetector::Softpatch(m) => m.nearest_training_patches(&layers)?,
            FittedDetector::Dinomaly(_) => return Ok(None),
        });
    }
    Ok(Some(out))
}

/// Whether the model recorded where its bank patches came from.
fn provenance_state(model: &FittedDetector) -> &'static str {
    let recorded = match model {
        FittedDetector::Patchcore(m) => m.provenance().is_some(),
        FittedDetector::Softpatch(m) => m.provenance().is_some(),
        FittedDetector::Dinomaly(_) => return "not-memory-bank",
    };
    if recorded { "recorded" } else { "none" }
}

/// Writes `report.html` into `out`, with thumbnails of the training images that nearest patches
/// came from under `report/train/`. `nearest` pairs anomalous ids with their nearest patches;
/// `model_dir` holds [`TRAINING_IMAGES`] when the model was fitted by this version.
pub(crate) fn write_report_page(
    out: &Path,
    model_dir: &Path,
    model: &FittedDetector,
    threshold: f32,
    mut rows: Vec<ReportRow>,
    nearest: BTreeMap<SampleId, NearestTrainingPatch>,
) -> anyhow::Result<()> {
    let grid = match model {
        FittedDetector::Patchcore(m) => m.grid(),
        FittedDetector::Softpatch(m) => m.grid(),
        FittedDetector::Dinomaly(_) => (1, 1),
    };
    let paths = training_paths(model_dir)?;
    let dir = out.join("report").join("train");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut thumbs_of: BTreeMap<SampleId, Option<String>> = BTreeMap::new();
    for row in &mut rows {
        let Some(n) = nearest.get(&SampleId::new(row.id.as_str())) else { continue };
        let source_id = n.source.as_ref().and_then(|s| s.sample_id.clone());
        let image = match &source_id {
            Some(id) => {
                let next = thumbs_of.len();
                thumbs_of
                    .entry(id.clone())
                    .or_insert_with(|| training_thumb(&paths, id, &dir, next))
                    .clone()
            }
            None => None,
        };
        row.nearest = Some(Nearest {
            cell: n.cell,
            grid,
            distance: n.distance,
            source_id: source_id.map(|id| id.to_string()),
            source_cell: n.source.as_ref().map(|s| s.cell),
            image,
        });
    }
    rows.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    let hist = if rows.is_empty() {
        Vec::new()
    } else {
        let ids = rows.iter().map(|r| SampleId::new(r.id.as_str())).collect();
        let scores =
            FusedScores::new("anomaly_score", ids, rows.iter().map(|r| r.score).collect())?;
        Histogram::new(&scores, None, 30)?.bins
    };
    let title = model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let data = ReportData {
        title,
        detector: llb_detect::Detector::name(model),
        threshold,
        heat: HeatScale { low: threshold / 2.0, high: threshold },
        provenance: provenance_state(model),
        n: rows.len(),
        n_anomalous: rows.iter().filter(|r| r.anomalous).count(),
        hist,
        rows,
    };
    let page = super::page::html(
        &format!("llb report: {}", data.title),
        &data,
        include_str!("report.js"),
    )?;
    let path = out.join(REPORT_PAGE);
    llb_types::atomic::write(&path, page.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The training images' paths from the model folder (empty for models fitted before it existed).
fn training_paths(model_dir: &Path) -> anyhow::Result<BTreeMap<SampleId, PathBuf>> {
    let path = model_dir.join(TRAINING_IMAGES);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the thumbnail of training image `id` as `report/train/{index:05}.jpg`; `None` when its
/// file is unknown or unreadable (the page then names the image without showing it).
fn training_thumb(
    paths: &BTreeMap<SampleId, PathBuf>,
    id: &SampleId,
    dir: &Path,
    index: usize,
) -> Option<String> {
    let path = paths.get(id)?;
    let name = format!("{index:05}.jpg");
    let written = thumbs::photo(path, TRAIN_THUMB_PX)
        .and_then(|photo| thumbs::write_jpeg(&dir.join(&name), &photo));
    match written {
        Ok(()) => Some(format!("report/train/{name}")),
        Err(e) => {
            tracing::warn!(%id, "no thumbnail of the training image: {e:#}");
            None
        }
    }
}
