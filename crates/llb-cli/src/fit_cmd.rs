//! `llb fit` and `llb purify`: the two stages (or stage 1 alone) on a training set.

use crate::pipeline::{
    DataArgs, ModelArgs, ModelCard, OnBadImage, RunContext, Screening, calibrate_threshold,
    fit_final, groups_of, model_dir, screen,
};
use anyhow::Context;
use candle_core::Device;
use llb_data::Dataset;
use llb_purify::{Histogram, PurityReport};
use llb_types::Label;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `llb fit` and `llb purify`.
#[derive(Debug, clap::Args)]
pub(crate) struct FitArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Output folder: the model, the score table, `purification.csv` and reports.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Skip unreadable images (reported) or stop at the first one.
    #[arg(long, value_enum, default_value = "skip")]
    pub(crate) on_bad_image: OnBadImage,
    /// Asset and feature cache folder (default `$LLB_CACHE`, else `~/.cache/llb`).
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
}

/// Runs `llb fit`; with `stage1_only` (`llb purify`) stops after writing the screening results.
pub(crate) fn run(args: &FitArgs, stage1_only: bool, device: &Device) -> anyhow::Result<()> {
    let dataset = args.data.load()?;
    let ctx = RunContext::new(args.cache.clone(), device)?;
    let settings = args.model.settings();
    if stage1_only {
        anyhow::ensure!(settings.purify.is_some(), "`llb purify` runs stage 1: drop --no-purify");
    }
    let extractor = ctx.extractor(&settings.encoder)?;
    let train = extractor.extract(&dataset.train, args.on_bad_image)?;
    let groups = groups_of(&dataset.train, &train.ids);
    let cache_key = format!(
        "{}|{}",
        serde_json::to_string(&settings.detector)?,
        serde_json::to_string(extractor.key())?
    );
    let resume = ctx.assets.root().join("stage1");
    let screening = screen(&train, &groups, &settings, &cache_key, Some(&resume))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_screening(&args.out, &dataset, screening.as_ref())?;
    if !train.failures.is_empty() {
        let failures: BTreeMap<String, String> =
            train.failures.iter().map(|(id, reason)| (id.to_string(), reason.clone())).collect();
        model_dir::write_json(&args.out.join("skipped_images.json"), &failures)?;
    }
    let mut summary = serde_json::json!({
        "out": args.out,
        "n_train": train.ids.len(),
        "n_skipped": train.failures.len(),
    });
    if let Some(s) = &screening {
        summary["n_kept"] = s.purification.selection.kept.len().into();
        summary["n_dropped"] = s.purification.selection.dropped.len().into();
    }
    if !stage1_only {
        let fitted = fit_final(&train, &settings, screening)?;
        let threshold = calibrate_threshold(&train, &fitted.kept, &settings)?;
        let card = ModelCard {
            format: 1,
            settings,
            weights_sha256: extractor.key().weights_sha256.clone(),
            threshold,
            n_train: train.ids.len(),
            n_kept: fitted.kept.len(),
        };
        let detector_card = llb_detect::ModelCard {
            encoder: extractor.key().encoder.clone(),
            encoder_weights_sha256: extractor.key().weights_sha256.clone(),
            input_spec: extractor.input_spec(),
            image_size_px: [extractor.image_size_px(); 2],
            image_score_rule: card.settings.test_score,
            image_score_threshold: Some(threshold),
        };
        model_dir::save(&args.out, &card, &detector_card, &fitted.model)?;
        summary["n_kept"] = fitted.kept.len().into();
        summary["threshold"] = threshold.into();
    }
    println!("{summary}");
    Ok(())
}

/// Writes the stage-1 outputs: the score table, `purification.csv` (most suspicious first), the
/// fused-score histogram and, when hidden labels exist, the purity report.
pub(crate) fn write_screening(
    out: &Path,
    dataset: &Dataset,
    screening: Option<&Screening>,
) -> anyhow::Result<()> {
    let Some(screening) = screening else { return Ok(()) };
    screening.table.save_csv(&out.join("score_table.csv"))?;
    let selection = &screening.purification.selection;
    let kept: std::collections::BTreeSet<_> = selection.kept.iter().collect();
    let path_of: BTreeMap<_, _> = dataset.train.iter().map(|s| (&s.id, &s.image_path)).collect();
    let mut rows: Vec<(f32, &llb_types::SampleId)> =
        screening.purification.fused.iter().map(|(id, score)| (score, id)).collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["sample_id", "path", "fused_score", "verdict"])?;
    for (score, id) in rows {
        let path = path_of.get(id).map(|p| p.display().to_string()).unwrap_or_default();
        let verdict = if kept.contains(id) { "kept" } else { "dropped" };
        csv.write_record([id.as_str(), &path, &score.to_string(), verdict])?;
    }
    let csv = csv.into_inner().map_err(|e| anyhow::anyhow!("writing purification.csv: {e}"))?;
    llb_assets::write_atomic(&out.join("purification.csv"), &csv)?;
    let labels: BTreeMap<_, Label> =
        dataset.train.iter().filter_map(|s| s.label.map(|l| (s.id.clone(), l))).collect();
    let labelled = !labels.is_empty() && labels.len() == dataset.train.len();
    let histogram = Histogram::new(&screening.purification.fused, labelled.then_some(&labels), 40)?
        .with_cut(selection.cut);
    crate::plot::histogram_png(&out.join("fused_scores.png"), &histogram, "fused stage-1 scores")?;
    if labelled {
        let report = PurityReport::new(selection, &labels)?;
        model_dir::write_json(&out.join("purity.json"), &report)?;
    }
    Ok(())
}
