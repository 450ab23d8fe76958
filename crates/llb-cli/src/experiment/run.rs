//! `llb experiment`: the FUIAD grid (data × α × {baseline, purified}) and the ablations of a
//! manifest, with per-row resume, written as one JSON file of result rows.

use super::dataset::{DatasetSpec, contaminated, load_clean};
use super::grid::{GridCell, assemble, grid, read_logs};
use super::log::{append_log, lock_log, read_rows};
use super::manifest::Manifest;
use super::shard::{Shard, assign};
use crate::run_context::RunContext;
use anyhow::Context;
use candle_core::Device;
use llb_data::{Dataset, Sample};
use llb_pipeline::{
    Extracted, FitSettings, OnBadImage, evaluate, fit_final, groups_of, screen, screening_quality,
};
use llb_purify::PurityReport;
use llb_types::Label;
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
    /// Compute only shard `I` of `N` (0-based: 0 ≤ I < N): the grid's (category, α, seed) cells
    /// that a content-keyed, balanced assignment gives it, appended to its own log
    /// `<name>.shard-I-of-N.rows.jsonl`; no `<name>.json` is written (see `--merge`).
    #[arg(long, value_name = "I/N", conflicts_with = "merge")]
    pub(crate) shard: Option<Shard>,
    /// Compute nothing: write `<name>.json` from the logs in `--out` (the whole run's and every
    /// shard's), the same bytes one process would write; fails naming any row no log holds.
    #[arg(long)]
    pub(crate) merge: bool,
}

/// One fitted and evaluated configuration (the schema shared with xtask's table renderer).
pub(crate) use llb_results::ResultRow;

/// Everything a table is rendered from: this run's manifest and its rows.
pub(crate) type Results = llb_results::Results<Manifest>;

/// One planned row: labels and settings.
#[derive(Clone)]
pub(crate) struct Planned {
    pub(crate) method: String,
    pub(crate) ablation: Option<String>,
    pub(crate) settings: FitSettings,
    pub(crate) backbone: usize,
}

/// Runs `llb experiment`: the whole grid, one shard of it (`--shard`), or the assembly of every
/// log (`--merge`).
pub(crate) fn run(args: &ExperimentArgs, device: &Device) -> anyhow::Result<()> {
    let manifest = Manifest::read(&args.manifest)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started = Instant::now();
    let categories: Vec<(&DatasetSpec, String)> = manifest
        .datasets
        .iter()
        .flat_map(|d| d.categories().into_iter().map(move |c| (d, c)))
        .collect();
    let grid = grid(&manifest, &categories)?;
    let results_path = args.out.join(format!("{}.json", manifest.name));
    // A shard resumes from its own log only (other shards may be appending to theirs); the
    // whole run and the merge read every log.
    let (log_path, mut done) = match args.shard {
        Some(shard) => {
            let path = args.out.join(shard.log_name(&manifest.name));
            let done = read_rows(&path)?.into_iter().map(|r| (r.key.clone(), r)).collect();
            (path, done)
        }
        None => (
            args.out.join(format!("{}.rows.jsonl", manifest.name)),
            read_logs(&args.out, &manifest.name)?,
        ),
    };
    // One writer per log: a second run on the same log waits, then skips the finished rows.
    let _log_lock = lock_log(&log_path)?;
    let selected: Vec<&GridCell<'_>> = match args.shard {
        Some(shard) => {
            let weights: Vec<_> = grid.iter().map(|c| (c.key.clone(), c.planned.len())).collect();
            let assignment = assign(&weights, shard.count);
            grid.iter().filter(|c| assignment[&c.key] == shard.index).collect()
        }
        None => grid.iter().collect(),
    };
    let todo: Vec<&GridCell<'_>> = selected
        .iter()
        .copied()
        .filter(|c| c.planned.iter().any(|(_, key)| !done.contains_key(key)))
        .collect();
    let mut computed = 0usize;
    if !todo.is_empty() && !args.merge {
        computed = compute(args, &manifest, &todo, &mut done, &log_path, device)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(shard) = args.shard {
        let rows: usize = selected.iter().map(|c| c.planned.len()).sum();
        println!(
            "{}",
            serde_json::json!({"shard": shard.to_string(), "log": log_path, "cells": selected.len(),
                "rows": rows, "computed": computed, "seconds": seconds})
        );
        return Ok(());
    }
    let rows = assemble(&grid, &done).with_context(|| {
        format!("assembling {} from the logs in {}", results_path.display(), args.out.display())
    })?;
    let results = Results { manifest: manifest.clone(), rows };
    llb_pipeline::write_json(&results_path, &results)?;
    println!(
        "{}",
        serde_json::json!({"results": results_path, "rows": results.rows.len(),
            "computed": computed, "seconds": seconds})
    );
    Ok(())
}

/// Computes the rows of `cells` that `done` lacks, appending each to `log_path` as it finishes;
/// returns how many were computed. Cells of one category are consecutive (manifest order), so
/// each category's clean data is loaded once.
fn compute(
    args: &ExperimentArgs,
    manifest: &Manifest,
    cells: &[&GridCell<'_>],
    done: &mut BTreeMap<String, ResultRow>,
    log_path: &std::path::Path,
    device: &Device,
) -> anyhow::Result<usize> {
    let ctx = RunContext::new(args.cache.clone(), device)?;
    let resume = ctx.assets.root().join("stage1");
    let extractors = manifest
        .backbones
        .iter()
        .map(|b| ctx.extractor(&b.settings.encoder))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut computed = 0usize;
    let mut clean: Option<(&str, Option<Dataset>)> = None;
    for grid_cell in cells {
        let cell = &grid_cell.cell;
        let (category, ratio, seed) = (cell.category, cell.ratio, cell.seed);
        let _span =
            tracing::info_span!("cell", category = %category, alpha = ratio, seed).entered();
        if clean.as_ref().is_none_or(|(c, _)| *c != category) {
            clean = Some((category, load_clean(cell.dataset, category, &ctx)?));
        }
        let clean_data = clean.as_ref().and_then(|(_, d)| d.as_ref());
        let data = contaminated(cell.dataset, clean_data, category, ratio, seed)?;
        let all: Vec<Sample> = data.train.iter().chain(&data.test).cloned().collect();
        let mut features = BTreeMap::new();
        for (planned, key) in &grid_cell.planned {
            if done.contains_key(key) {
                continue;
            }
            let b = planned.backbone;
            if let std::collections::btree_map::Entry::Vacant(slot) = features.entry(b) {
                slot.insert(extractors[b].extract(&all, OnBadImage::Skip)?);
            }
            let extracted = &features[&b];
            let row = run_one(
                cell,
                &data,
                extracted,
                &extractors[b],
                planned.clone(),
                key.clone(),
                &resume,
            )?;
            tracing::info!(method = %row.method, ablation = ?row.ablation, seed, i_auroc = row.i_auroc,
                screening_auroc = ?row.screening.as_ref().map(|s| s.auroc), fit_seconds = row.fit_seconds, "row done");
            append_log(log_path, &row)?;
            computed += 1;
            done.insert(row.key.clone(), row);
        }
    }
    Ok(computed)
}

/// The rows of one (α, seed) cell: every backbone's baseline and purified settings, and the
/// ablations of the first backbone at the ablation ratios, all with `seed`'s seeds.
pub(crate) fn plan(manifest: &Manifest, ratio: f64, seed: u64) -> Vec<Planned> {
    let mut planned = Vec::new();
    for (b, backbone) in manifest.backbones.iter().enumerate() {
        let settings = backbone.settings.with_seed(seed);
        let purified = method_name(&backbone.name, &settings);
        planned.push(Planned {
            method: backbone.name.clone(),
            ablation: None,
            settings: FitSettings { purify: None, ..settings.clone() },
            backbone: b,
        });
        planned.push(Planned {
            method: purified.clone(),
            ablation: None,
            settings: settings.clone(),
            backbone: b,
        });
        if b == 0 && manifest.ablation_ratios.contains(&ratio) {
            for ablation in &manifest.ablations {
                for (label, varied) in ablation.variants(&backbone.settings) {
                    planned.push(Planned {
                        method: purified.clone(),
                        ablation: Some(label),
                        settings: varied.with_seed(seed),
                        backbone: b,
                    });
                }
            }
        }
    }
    planned
}

/// One (category, α, seed) cell of the grid.
pub(crate) struct Cell<'a> {
    pub(crate) manifest: &'a Manifest,
    pub(crate) dataset: &'a DatasetSpec,
    pub(crate) category: &'a str,
    pub(crate) ratio: f64,
    pub(crate) seed: u64,
}

impl Cell<'_> {
    /// The resume key of `settings` in this cell: SHA-256 of the canonical JSON of everything
    /// that determines the numbers.
    pub(crate) fn key(&self, settings: &FitSettings) -> anyhow::Result<String> {
        let description = serde_json::json!({
            "row_format": 2,
            "dataset": self.dataset,
            "category": self.category,
            "contamination_ratio": self.ratio,
            "seed": self.seed,
            "pixel_eval_px": self.manifest.pixel_eval_px,
            "settings": settings,
        });
        Ok(llb_types::sha256::sha256_hex(serde_json::to_string(&description)?.as_bytes()))
    }
}

/// Fits, evaluates and describes one planned row.
fn run_one(
    cell: &Cell<'_>,
    data: &Dataset,
    features: &Extracted,
    extractor: &llb_pipeline::Extractor,
    planned: Planned,
    key: String,
    resume: &std::path::Path,
) -> anyhow::Result<ResultRow> {
    let train_ids: Vec<_> = data.train.iter().map(|s| s.id.clone()).collect();
    let test_ids: Vec<_> = data.test.iter().map(|s| s.id.clone()).collect();
    let train = features.subset(&train_ids)?;
    let test = features.subset(&test_ids)?;
    let groups = groups_of(&data.train, &train.ids);
    let settings = &planned.settings;
    let encoder_key = extractor.cache_key();
    let fit_started = Instant::now();
    let screening = screen(&train, &groups, settings, &encoder_key, Some(resume))?;
    let fitted = fit_final(&train, settings, screening)?;
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    let evaluation = evaluate(
        &fitted.model,
        settings.test_score,
        &test,
        &data.test,
        extractor.preprocess(),
        cell.manifest.pixel_eval_px,
    )?;
    result_row(cell, data, planned, key, &train, &fitted, &evaluation, fit_seconds)
}

/// `<backbone>+llb(<selection rule>)`: the purified method's column name.
fn method_name(backbone: &str, settings: &FitSettings) -> String {
    let selection = settings.purify.as_ref().map_or("", |p| p.selection.as_str());
    format!("{backbone}+llb({selection})")
}

#[allow(clippy::too_many_arguments, reason = "one row gathers every piece of one run")]
fn result_row(
    cell: &Cell<'_>,
    data: &Dataset,
    planned: Planned,
    key: String,
    train: &Extracted,
    fitted: &llb_pipeline::TwoStage,
    evaluation: &llb_pipeline::Evaluation,
    fit_seconds: f64,
) -> anyhow::Result<ResultRow> {
    let labels: BTreeMap<_, Label> =
        data.train.iter().filter_map(|s| s.label.map(|l| (s.id.clone(), l))).collect();
    let anomalous: BTreeSet<_> =
        labels.iter().filter(|(_, l)| l.is_anomalous()).map(|(id, _)| id).collect();
    let labelled = labels.len() == data.train.len();
    let purity = match &fitted.screening {
        Some(s) if labelled => Some(PurityReport::new(&s.purification.selection, &labels)?),
        _ => None,
    };
    let screening = match &fitted.screening {
        Some(s) if labelled => screening_quality(&s.purification.fused, &labels)?,
        _ => None,
    };
    let pixel = evaluation.pixel.as_ref();
    Ok(ResultRow {
        key,
        category: cell.category.to_owned(),
        contamination_ratio: cell.ratio,
        achieved_ratio: data.contamination.as_ref().map_or(cell.ratio, |c| c.achieved_ratio),
        seed: cell.seed,
        method: planned.method,
        ablation: planned.ablation,
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
        screening,
        fit_seconds,
    })
}
