//! `llb eval`: a saved model's metrics on a labelled test split, as JSON and a Markdown table.

use crate::data_args::DataArgs;
use crate::run_context::RunContext;
use anyhow::Context;
use candle_core::Device;
use llb_data::Sample;
use llb_pipeline::{Model, OnBadImage, evaluate, write_json};
use llb_types::SampleId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Options of `llb eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// A folder written by `llb fit`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Skip unreadable test images (reported) or stop at the first one.
    #[arg(long, value_parser = crate::model_args::on_bad_image(), default_value = "skip")]
    pub(crate) on_bad_image: OnBadImage,
    /// Side in pixels of the grid the pixel metrics are computed on (default: the encoder's
    /// input side).
    #[arg(long)]
    pub(crate) pixel_size: Option<u32>,
    /// Also write `metrics.json` and `metrics.md` into this folder.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Asset and feature cache folder (default `$LLB_CACHE`, else `~/.cache/llb`).
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
}

/// Runs `llb eval`: prints the metrics as one JSON object on stdout.
///
/// Refuses a model fitted with other encoder weights, warns when test images are among the
/// model's training images (`training_images.json` of the model folder, compared by file) and
/// reports the test images it skipped.
pub(crate) fn run(args: &EvalArgs, device: &Device) -> anyhow::Result<()> {
    let ctx = RunContext::new(args.cache.clone(), device)?;
    let loaded = Model::load(&args.model, &ctx.device)?;
    let dataset = args.data.load()?;
    anyhow::ensure!(!dataset.test.is_empty(), "the data set has no test split to evaluate on");
    let extractor = ctx.extractor(&loaded.card.settings.encoder)?;
    loaded.check_weights(&extractor)?;
    let Model { card, detector: model, .. } = loaded;
    let n_test_in_training = test_in_training(&args.model, &dataset.test)?;
    if n_test_in_training > 0 {
        tracing::warn!(
            n_test_in_training,
            "test images are among the model's training images: the metrics are optimistic"
        );
    }
    let test = extractor.extract(&dataset.test, args.on_bad_image)?;
    if !test.failures.is_empty() {
        tracing::warn!(n_skipped = test.failures.len(), "test images skipped (unreadable)");
    }
    let evaluation = evaluate(
        &model,
        card.settings.test_score,
        &test,
        &dataset.test,
        extractor.preprocess(),
        args.pixel_size,
    )?;
    let json = serde_json::json!({
        "category": dataset.category,
        "n_test": evaluation.n_test,
        "n_test_anomalous": evaluation.n_test_anomalous,
        "i_auroc": evaluation.image.auroc,
        "i_ap": evaluation.image.ap,
        "i_f1max": evaluation.image.f1max,
        "p_auroc": evaluation.pixel.as_ref().map(|p| p.auroc),
        "p_ap": evaluation.pixel.as_ref().map(|p| p.ap),
        "p_f1max": evaluation.pixel.as_ref().map(|p| p.f1max),
        "p_aupro": evaluation.pixel.as_ref().map(|p| p.aupro),
        "pixel_resolution_px": evaluation.pixel_resolution_px,
        "n_skipped": test.failures.len(),
        "skipped": test.failures.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        "n_test_in_training": n_test_in_training,
    });
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)?;
        write_json(&out.join("metrics.json"), &json)?;
        let mut md = String::from("| metric | value |\n|---|---|\n");
        for (key, value) in json.as_object().into_iter().flatten() {
            if let Some(v) =
                value.as_f64().filter(|_| key.starts_with("i_") || key.starts_with("p_"))
            {
                md.push_str(&format!("| {key} | {:.1} |\n", 100.0 * v));
            }
        }
        llb_types::atomic::write(&out.join("metrics.md"), md.as_bytes())?;
    }
    println!("{json}");
    Ok(())
}

/// How many of `test` are files the model in `model_dir` was trained on, by the
/// `training_images.json` `llb fit` writes (0 when a library wrote the folder without one).
fn test_in_training(model_dir: &Path, test: &[Sample]) -> anyhow::Result<usize> {
    let path = model_dir.join(crate::review::TRAINING_IMAGES);
    if !path.is_file() {
        tracing::debug!(path = %path.display(), "no training image list: overlap not checked");
        return Ok(0);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let training: BTreeMap<SampleId, PathBuf> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let files: BTreeSet<PathBuf> = training.values().map(|p| canonical(p)).collect();
    Ok(test.iter().filter(|s| files.contains(&canonical(&s.image_path))).count())
}
