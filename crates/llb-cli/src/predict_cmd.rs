//! `llb predict`: scores, verdicts, heat-map overlays, the report page and (optionally) raw maps
//! for new images.

use crate::review;
use crate::run_context::RunContext;
use anyhow::Context;
use candle_core::Device;
use llb_data::Sample;
use llb_pipeline::{Model, ModelCard, OnBadImage, for_each_scored};
use llb_types::SampleId;
use std::path::{Path, PathBuf};

/// Options of `llb predict`.
#[derive(Debug, clap::Args)]
pub(crate) struct PredictArgs {
    /// A folder written by `llb fit`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// An image file, or a folder of images (searched recursively).
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Output folder: `scores.csv`, `overlays/` and `report.html`.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Decision threshold on the image score (default: the model's unsupervised threshold).
    #[arg(long)]
    pub(crate) threshold: Option<f32>,
    /// Also write each raw anomaly map as a float32 `.npy` under `maps/`.
    #[arg(long)]
    pub(crate) save_maps: bool,
    /// Skip unreadable images (reported) or stop at the first one.
    #[arg(long, value_parser = crate::model_args::on_bad_image(), default_value = "skip")]
    pub(crate) on_bad_image: OnBadImage,
    /// Asset and feature cache folder (default `$LLB_CACHE`, else `~/.cache/llb`).
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
}

/// Runs `llb predict`.
pub(crate) fn run(args: &PredictArgs, device: &Device) -> anyhow::Result<()> {
    let ctx = RunContext::new(args.cache.clone(), device)?;
    let loaded = Model::load(&args.model, &ctx.device)?;
    let extractor = ctx.extractor(&loaded.card.settings.encoder)?;
    loaded.check_weights(&extractor)?;
    let Model { card, detector: model, .. } = loaded;
    let samples = if args.input.is_file() {
        let name =
            args.input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        vec![Sample::unlabelled(SampleId::new(name), args.input.clone())]
    } else {
        llb_data::read_image_folder(&args.input)?
    };
    let features = extractor.extract(&samples, args.on_bad_image)?;
    let threshold = args.threshold.unwrap_or(card.threshold);
    let size = extractor.image_size_px();
    let path_of: std::collections::BTreeMap<_, _> =
        samples.iter().map(|s| (&s.id, &s.image_path)).collect();
    for dir in ["overlays", "maps"].iter().filter(|d| **d == "overlays" || args.save_maps) {
        std::fs::create_dir_all(args.out.join(dir))
            .with_context(|| format!("creating {}", args.out.join(dir).display()))?;
    }
    // A CSV writer, so that ids and paths with commas, quotes or line breaks stay one field.
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["sample_id", "path", "anomaly_score", "verdict"])?;
    let mut n_anomalous = 0;
    let mut report_rows = Vec::with_capacity(features.ids.len());
    for_each_scored::<anyhow::Error>(
        &model,
        card.settings.test_score,
        &features,
        size,
        |id, score, map| {
            let anomalous = ModelCard::is_anomalous(score, threshold);
            n_anomalous += usize::from(anomalous);
            let verdict = if anomalous { "anomalous" } else { "normal" };
            let path = path_of[id].display().to_string();
            csv.write_record([id.as_str(), &path, &score.to_string(), verdict])?;
            let stem = file_stem(id);
            let overlay = args.out.join("overlays").join(format!("{stem}.png"));
            crate::overlay::overlay_png(
                path_of[id],
                &map,
                size as u32,
                threshold / 2.0,
                threshold,
                &overlay,
            )?;
            if args.save_maps {
                write_npy(&args.out.join("maps").join(format!("{stem}.npy")), &map, size)?;
            }
            report_rows.push(review::ReportRow {
                id: id.to_string(),
                score,
                anomalous,
                overlay: review::url_path(&format!("overlays/{stem}.png")),
                nearest: None,
            });
            Ok(())
        },
    )?;
    let csv = csv.into_inner().map_err(|e| anyhow::anyhow!("writing scores.csv: {e}"))?;
    llb_types::atomic::write(&args.out.join("scores.csv"), &csv)?;
    let anomalous: Vec<SampleId> = report_rows
        .iter()
        .zip(&features.ids)
        .filter(|(r, _)| r.anomalous)
        .map(|(_, id)| id.clone())
        .collect();
    let nearest = review::nearest_patches(&model, &features, &anomalous)?
        .map(|patches| anomalous.into_iter().zip(patches).collect())
        .unwrap_or_default();
    review::write_report_page(&args.out, &args.model, &model, threshold, report_rows, nearest)?;
    let summary = serde_json::json!({
        "n_images": features.ids.len(),
        "n_skipped": features.failures.len(),
        "n_anomalous": n_anomalous,
        "threshold": threshold,
        "scores": args.out.join("scores.csv"),
        "report": args.out.join(review::REPORT_PAGE),
    });
    println!("{summary}");
    Ok(())
}

/// A file name for a sample id: its path with `/` replaced, extension dropped.
fn file_stem(id: &SampleId) -> String {
    let text = id.as_str();
    let text = text.rsplit_once('.').map_or(text, |(stem, _)| stem);
    text.replace(['/', '\\'], "__")
}

/// A `[size, size]` float32 little-endian `.npy` (format 1.0), written atomically.
fn write_npy(path: &Path, map: &[f32], size: usize) -> anyhow::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({size}, {size}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(map.iter().flat_map(|v| v.to_le_bytes()));
    llb_types::atomic::write(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
