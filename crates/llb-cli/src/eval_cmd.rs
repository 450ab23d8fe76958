//! `llb eval`: a saved model's metrics on a labelled test split, as JSON and a Markdown table.

use crate::pipeline::{DataArgs, OnBadImage, RunContext, evaluate, model_dir};
use candle_core::Device;
use std::path::PathBuf;

/// Options of `llb eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// A folder written by `llb fit`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Skip unreadable test images (reported) or stop at the first one.
    #[arg(long, value_enum, default_value = "skip")]
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
pub(crate) fn run(args: &EvalArgs, device: &Device) -> anyhow::Result<()> {
    let ctx = RunContext::new(args.cache.clone(), device)?;
    let (card, model) = model_dir::load(&args.model, &ctx.device)?;
    let dataset = args.data.load()?;
    anyhow::ensure!(!dataset.test.is_empty(), "the data set has no test split to evaluate on");
    let extractor = ctx.extractor(&card.settings.encoder)?;
    anyhow::ensure!(
        extractor.key().weights_sha256 == card.weights_sha256,
        "the encoder weights in the cache ({}) differ from the ones the model was fitted with ({})",
        extractor.key().weights_sha256,
        card.weights_sha256
    );
    let test = extractor.extract(&dataset.test, args.on_bad_image)?;
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
    });
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)?;
        model_dir::write_json(&out.join("metrics.json"), &json)?;
        let mut md = String::from("| metric | value |\n|---|---|\n");
        for (key, value) in json.as_object().into_iter().flatten() {
            if let Some(v) =
                value.as_f64().filter(|_| key.starts_with("i_") || key.starts_with("p_"))
            {
                md.push_str(&format!("| {key} | {:.1} |\n", 100.0 * v));
            }
        }
        llb_assets::write_atomic(&out.join("metrics.md"), md.as_bytes())?;
    }
    println!("{json}");
    Ok(())
}
