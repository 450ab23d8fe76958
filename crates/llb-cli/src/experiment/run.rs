//! `llb experiment`: the FUIAD grid (data × α × {baseline, purified}) and the ablations of a
//! manifest, with per-row resume, written as one JSON file of result rows.

use super::dataset::{contaminated, load_clean};
use super::log::{append_log, lock_log, read_log, read_rows};
use super::manifest::Manifest;
use crate::pipeline::{
    Extracted, FitSettings, OnBadImage, RunContext, evaluate, fit_final, groups_of, model_dir,
    screen,
};
use anyhow::Context;
use candle_core::Device;
use llb_data::{Dataset, Sample};
use llb_purify::PurityReport;
use llb_types::Label;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

/// Options of `llb experiment`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExperimentArgs {
    /// The run manifest (JSON).
    #[arg(long)]
    pub(crate) manifest: PathBuf,
    /// Output folder for `<name>.json` (and the resume log `<name>.rows.jsonl`).
    #[arg(long, default_value = "results")]
    pub(crate) out: PathBuf,
    /// Asset and feature cache folder (default `$LLB_CACHE`, else `~/.cache/llb`).
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
}

/// One fitted and evaluated configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultRow {
    /// Category.
    pub(crate) category: String,
    /// α asked for.
    pub(crate) contamination_ratio: f64,
    /// α achieved (fewer anomalies than asked when the data set runs out).
    pub(crate) achieved_ratio: f64,
    /// `<detector>` (baseline) or `<detector>+llb(<selection rule>)` (purified).
    pub(crate) method: String,
    /// The varied factor, for ablation rows.
    pub(crate) ablation: Option<String>,
    /// Training images.
    pub(crate) n_train: usize,
    /// Anomalous training images (hidden labels).
    pub(crate) n_train_anomalous: usize,
    /// Images the final model was fitted on.
    pub(crate) n_kept: usize,
    /// Anomalous images among them.
    pub(crate) n_kept_anomalous: usize,
    /// Test images.
    pub(crate) n_test: usize,
    /// Image AUROC.
    pub(crate) i_auroc: f64,
    /// Image average precision.
    pub(crate) i_ap: f64,
    /// Image F1max.
    pub(crate) i_f1max: f64,
    /// Pixel AUROC.
    pub(crate) p_auroc: Option<f64>,
    /// Pixel average precision.
    pub(crate) p_ap: Option<f64>,
    /// Pixel F1max.
    pub(crate) p_f1max: Option<f64>,
    /// Pixel AUPRO (FPR ≤ 0.3).
    pub(crate) p_aupro: Option<f64>,
    /// Side of the square maps the pixel metrics were computed at.
    pub(crate) pixel_resolution_px: usize,
    /// Purity of the kept set, for purified rows.
    pub(crate) purity: Option<PurityReport>,
    /// Wall-clock seconds of stage 1 + stage 2 (features excluded: they are cached and shared).
    pub(crate) fit_seconds: f64,
}

impl ResultRow {
    pub(crate) fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.category,
            self.contamination_ratio,
            self.method,
            self.ablation.as_deref().unwrap_or("")
        )
    }
}

/// Everything a table is rendered from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Results {
    /// The manifest that produced the rows.
    pub(crate) manifest: Manifest,
    /// One row per (category, α, method, ablation).
    pub(crate) rows: Vec<ResultRow>,
}

/// Runs `llb experiment`.
pub(crate) fn run(args: &ExperimentArgs, device: &Device) -> anyhow::Result<()> {
    let manifest = Manifest::read(&args.manifest)?;
    let ctx = RunContext::new(args.cache.clone(), device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let log_path = args.out.join(format!("{}.rows.jsonl", manifest.name));
    let _log_lock = lock_log(&log_path)?;
    let mut done = read_log(&log_path)?;
    let started = Instant::now();
    let resume = ctx.assets.root().join("stage1");
    let extractors = manifest
        .backbones
        .iter()
        .map(|b| ctx.extractor(&b.encoder))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for category in manifest.dataset.categories() {
        let _span = tracing::info_span!("category", category = %category).entered();
        let clean = load_clean(&manifest.dataset, &category, &ctx)?;
        for &ratio in &manifest.contamination_ratios {
            let _span = tracing::info_span!("alpha", alpha = ratio).entered();
            let data = contaminated(&manifest, clean.as_ref(), &category, ratio)?;
            for (b, (backbone, extractor)) in manifest.backbones.iter().zip(&extractors).enumerate()
            {
                let cache_key = format!(
                    "{}|{}",
                    serde_json::to_string(&backbone.detector)?,
                    serde_json::to_string(extractor.key())?
                );
                let all: Vec<Sample> = data.train.iter().chain(&data.test).cloned().collect();
                let features = extractor.extract(&all, OnBadImage::Skip)?;
                let train_ids: Vec<_> = data.train.iter().map(|s| s.id.clone()).collect();
                let test_ids: Vec<_> = data.test.iter().map(|s| s.id.clone()).collect();
                let train = features.subset(&train_ids)?;
                let test = features.subset(&test_ids)?;
                let groups = groups_of(&data.train, &train.ids);
                let name = backbone.detector.short_name();
                let purified = method_name(backbone);
                let mut runs: Vec<(String, Option<String>, FitSettings)> = vec![
                    (name, None, FitSettings { purify: None, ..backbone.clone() }),
                    (purified.clone(), None, backbone.clone()),
                ];
                if b == 0 && manifest.ablation_ratios.contains(&ratio) {
                    for ablation in &manifest.ablations {
                        for (label, settings) in ablation.variants(backbone) {
                            runs.push((purified.clone(), Some(label), settings));
                        }
                    }
                }
                for (method, ablation, settings) in runs {
                    let probe = RunKey {
                        category: &category,
                        ratio,
                        method: &method,
                        ablation: ablation.as_deref(),
                    };
                    if done.contains(&probe.to_string()) {
                        continue;
                    }
                    let fit_started = Instant::now();
                    let screening = screen(&train, &groups, &settings, &cache_key, Some(&resume))?;
                    let fitted = fit_final(&train, &settings, screening)?;
                    let fit_seconds = fit_started.elapsed().as_secs_f64();
                    let evaluation = evaluate(
                        &fitted.model,
                        settings.test_score,
                        &test,
                        &data.test,
                        extractor.preprocess(),
                        manifest.pixel_eval_px,
                    )?;
                    let row = result_row(
                        &data,
                        &category,
                        ratio,
                        method,
                        ablation,
                        &train,
                        &fitted,
                        &evaluation,
                        fit_seconds,
                    )?;
                    tracing::info!(method = %row.method, ablation = ?row.ablation, i_auroc = row.i_auroc,
                        p_aupro = ?row.p_aupro, fit_seconds, "row done");
                    append_log(&log_path, &row)?;
                    done.insert(row.key());
                }
            }
        }
    }
    let rows = read_rows(&log_path)?;
    let results = Results { manifest: manifest.clone(), rows };
    model_dir::write_json(&args.out.join(format!("{}.json", manifest.name)), &results)?;
    println!(
        "{}",
        serde_json::json!({"results": args.out.join(format!("{}.json", manifest.name)), "rows": results.rows.len(),
            "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

/// `<detector>+llb(<selection rule>)`: the purified method's column name. Backbones that differ
/// only in their stage-1 rules share one baseline row.
fn method_name(backbone: &FitSettings) -> String {
    let selection = backbone.purify.as_ref().map_or("", |p| p.selection.as_str());
    format!("{}+llb({selection})", backbone.detector.short_name())
}

struct RunKey<'a> {
    category: &'a str,
    ratio: f64,
    method: &'a str,
    ablation: Option<&'a str>,
}

impl std::fmt::Display for RunKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}|{}|{}|{}",
            self.category,
            self.ratio,
            self.method,
            self.ablation.unwrap_or("")
        )
    }
}

#[allow(clippy::too_many_arguments, reason = "one row gathers every piece of one run")]
fn result_row(
    data: &Dataset,
    category: &str,
    ratio: f64,
    method: String,
    ablation: Option<String>,
    train: &Extracted,
    fitted: &crate::pipeline::TwoStage,
    evaluation: &crate::pipeline::Evaluation,
    fit_seconds: f64,
) -> anyhow::Result<ResultRow> {
    let labels: BTreeMap<_, Label> =
        data.train.iter().filter_map(|s| s.label.map(|l| (s.id.clone(), l))).collect();
    let anomalous: BTreeSet<_> =
        labels.iter().filter(|(_, l)| l.is_anomalous()).map(|(id, _)| id).collect();
    let purity = match &fitted.screening {
        Some(s) if labels.len() == data.train.len() => {
            Some(PurityReport::new(&s.purification.selection, &labels)?)
        }
        _ => None,
    };
    let pixel = evaluation.pixel.as_ref();
    Ok(ResultRow {
        category: category.to_owned(),
        contamination_ratio: ratio,
        achieved_ratio: data.contamination.as_ref().map_or(ratio, |c| c.achieved_ratio),
        method,
        ablation,
        n_train: train.ids.len(),
        n_train_anomalous: train.ids.iter().filter(|id| anomalous.contains(id)).count(),
        n_kept: fitted.kept.len(),
        n_kept_anomalous: fitted.kept.iter().filter(|id| anomalous.contains(id)).count(),
        n_test: evaluation.n_test,
        i_auroc: evaluation.image.auroc,
        i_ap: evaluation.image.ap,
        i_f1max: evaluation.image.f1max,
        p_auroc: pixel.map(|p| p.auroc),
        p_ap: pixel.map(|p| p.ap),
        p_f1max: pixel.map(|p| p.f1max),
        p_aupro: pixel.map(|p| p.aupro),
        pixel_resolution_px: evaluation.pixel_resolution_px,
        purity,
        fit_seconds,
    })
}
