//! `llb fit` and `llb purify`: the two stages (or stage 1 alone) on a training set, the review
//! page of stage 1, and a person's decisions overruling its selection.

use crate::data_args::DataArgs;
use crate::metrics_cmd::bad;
use crate::model_args::ModelArgs;
use crate::review::{self, ReviewInput, ReviewMaps};
use crate::run_context::RunContext;
use crate::stage1_cmd::{self, Stage1Args};
use candle_core::Device;
use llb_data::Dataset;
use llb_pipeline::{
    DecisionsRecord, FitSettings, ModelCard, OnBadImage, OutputFolder, Screening,
    calibrate_threshold, fit_final, groups_of, screen_stored, screening_quality, write_json,
};
use llb_purify::{Decisions, Histogram, Purification, PurityReport};
use llb_types::{Label, SampleId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `llb fit` and `llb purify`.
#[derive(Debug, clap::Args)]
pub(crate) struct FitArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Output folder: the model, the score table, `purification.csv` and reports (not with
    /// `--stage1-only`, which writes no model folder).
    #[arg(long, required_unless_present = "stage1_only")]
    pub(crate) out: Option<PathBuf>,
    /// Skip unreadable images (reported) or stop at the first one.
    #[arg(long, value_parser = crate::model_args::on_bad_image(), default_value = "skip")]
    pub(crate) on_bad_image: OnBadImage,
    /// Asset and feature cache folder (default `$LLB_CACHE`, else `~/.cache/llb`).
    #[arg(long)]
    pub(crate) cache: Option<PathBuf>,
    /// A person's keep / drop calls that overrule the selection rule: a CSV with the header
    /// `id,decision` and `keep` or `drop` per reviewed image, as exported from `review.html`.
    #[arg(long, value_name = "FILE.csv")]
    pub(crate) decisions: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) stage1: Stage1Args,
}

/// Runs `llb fit`; with `stage1_only` (`llb purify`) stops after writing the screening results.
/// With `--stage1-only` it fits stage-1 sub-models into a store folder and writes no model
/// folder; with `--from-stage1` it takes every sub-model's scores from such a folder.
///
/// Every output goes into a temporary sibling of `--out` that is renamed into place at the end
/// ([`OutputFolder`]), so `--out` holds the old run's outputs or the new run's, whole.
pub(crate) fn run(args: &FitArgs, stage1_only: bool, device: &Device) -> anyhow::Result<()> {
    // Flags first: a typo in a rule fails before the data set is read or a feature computed.
    let settings = args.model.settings()?;
    stage1_cmd::check(&args.stage1, &settings)?;
    let dataset = args.data.load()?;
    let ctx = RunContext::new(args.cache.clone(), device)?;
    if stage1_only {
        anyhow::ensure!(settings.purify.is_some(), "`llb purify` runs stage 1: drop --no-purify");
    }
    let decisions = args.decisions.as_deref().map(review::load_decisions).transpose()?;
    if decisions.is_some() && settings.purify.is_none() {
        return Err(bad("--decisions overrule stage 1's selection: drop --no-purify"));
    }
    let extractor = ctx.extractor(&settings.encoder)?;
    let train = extractor.extract(&dataset.train, args.on_bad_image)?;
    let groups = groups_of(&dataset.train, &train.ids);
    let cache_key = extractor.cache_key();
    let resume = ctx.assets.root().join("stage1");
    let size = extractor.image_size_px();
    let mut maps = ReviewMaps::new(&train.ids, (size, size));
    if args.stage1.stage1_only {
        return stage1_cmd::fit_subsets(
            &args.stage1,
            &train,
            &groups,
            &settings,
            &cache_key,
            &mut maps,
        );
    }
    let store = args.stage1.store(&resume);
    let mut screening =
        screen_stored(&train, &groups, &settings, &cache_key, store, Some(&mut maps))?;
    let out_arg = args.out.as_deref().expect("clap requires --out without --stage1-only");
    let folder = OutputFolder::create(out_arg)?;
    let out = folder.path();
    // A person's decisions overrule the rule's selection before anything is written or fitted.
    let rule_selection = screening.as_ref().map(|s| s.purification.selection.clone());
    let record = match (&mut screening, &decisions) {
        (Some(s), Some(d)) => {
            let decided = s.purification.selection.apply_decisions(&s.purification.fused, d)?;
            let record = DecisionsRecord::new(d, &s.purification.selection, &decided);
            s.purification.selection = decided;
            Some(record)
        }
        _ => None,
    };
    write_screening(out, &dataset, screening.as_ref(), decisions.as_ref())?;
    let mut review_page = None;
    if let (Some(s), Some(rule)) = (&screening, &rule_selection) {
        let input = ReviewInput {
            title: dataset.category.clone(),
            detector: submodel_label(&settings)?,
            table: &s.table,
            purification: &s.purification,
            rule_selection: rule,
            decisions: decisions.as_ref(),
            samples: &dataset.train,
        };
        let page = review::write_review_page(out, &input, Some(&maps))?;
        review_page = Some(folder.final_path(&page));
    }
    drop(maps);
    if !train.failures.is_empty() {
        let failures: BTreeMap<String, String> =
            train.failures.iter().map(|(id, reason)| (id.to_string(), reason.clone())).collect();
        write_json(&out.join("skipped_images.json"), &failures)?;
    }
    let mut summary = serde_json::json!({
        "out": out_arg,
        "n_train": train.ids.len(),
        "n_skipped": train.failures.len(),
        "review": review_page,
    });
    if let Some(s) = &screening {
        summary["n_kept"] = s.purification.selection.kept.len().into();
        summary["n_dropped"] = s.purification.selection.dropped.len().into();
    }
    if stage1_only {
        if let (Some(record), Some(s), Some(rule)) = (record, &screening, &rule_selection) {
            let outcome = |n_kept| review::Outcome { n_kept, model: None };
            let outcomes = (outcome(rule.kept.len()), outcome(s.purification.selection.kept.len()));
            let applied = review::compare_decisions(
                record,
                &s.purification.fused,
                rule,
                outcomes,
                &train,
                &settings,
            )?;
            summary["decisions"] = decisions_summary(out, &applied)?;
        }
        folder.commit()?;
        println!("{summary}");
        return Ok(());
    }
    // The rule's own fit, to report what the decisions changed (only when they change the set).
    let baseline = match (&record, &screening, &rule_selection) {
        (Some(record), Some(s), Some(rule)) if record.changes_kept_set() => {
            let purification =
                Purification { fused: s.purification.fused.clone(), selection: rule.clone() };
            let rule_screening = Screening { table: s.table.clone(), purification };
            let fitted = fit_final(&train, &settings, Some(rule_screening))?;
            let threshold = calibrate_threshold(&train, &fitted.kept, &settings)?;
            Some((fitted, threshold))
        }
        _ => None,
    };
    let mut fitted = fit_final(&train, &settings, screening)?;
    let threshold = calibrate_threshold(&train, &fitted.kept, &settings)?;
    fitted.model.name_training_images(&fitted.kept)?;
    let card = ModelCard::new(
        settings,
        &extractor,
        &train.ids,
        fitted.kept.len(),
        threshold,
        record.clone(),
    );
    folder.save_model(&card, &extractor, &fitted.model)?;
    write_training_images(out, &dataset)?;
    summary["n_kept"] = fitted.kept.len().into();
    summary["threshold"] = threshold.into();
    if let (Some(record), Some(s), Some(rule)) = (record, &fitted.screening, &rule_selection) {
        let after =
            review::Outcome { n_kept: fitted.kept.len(), model: Some((&fitted.model, threshold)) };
        let before = match &baseline {
            Some((b, t)) => review::Outcome { n_kept: b.kept.len(), model: Some((&b.model, *t)) },
            None => review::Outcome {
                n_kept: fitted.kept.len(),
                model: Some((&fitted.model, threshold)),
            },
        };
        let applied = review::compare_decisions(
            record,
            &s.purification.fused,
            rule,
            (before, after),
            &train,
            &card.settings,
        )?;
        summary["decisions"] = decisions_summary(out, &applied)?;
    }
    folder.commit()?;
    println!("{summary}");
    Ok(())
}

/// A detector's kind as its settings name it (`patchcore`, `softpatch`, `dinomaly`).
/// What the review page calls the stage-1 sub-models: the detector kind, and for memory banks
/// how the bank is sampled and read (`patchcore (random 10 % bank, nearest)`), since the
/// default screener is a PatchCore unlike the final one.
fn submodel_label(settings: &FitSettings) -> anyhow::Result<String> {
    let submodel = settings.purify.as_ref().and_then(|p| p.submodel.as_ref());
    let value = serde_json::to_value(submodel.unwrap_or(&settings.detector))?;
    let kind = value["kind"].as_str().unwrap_or("detector");
    Ok(match (value["bank_sampling"].as_str(), value["coreset_fraction"].as_f64()) {
        (Some(sampling), Some(fraction)) => format!(
            "{kind} ({} {} % bank, {})",
            sampling.replace('-', " "),
            (fraction * 1000.0).round() / 10.0,
            value["patch_score"]["kind"].as_str().unwrap_or("nearest").replace('-', " ")
        ),
        _ => kind.to_owned(),
    })
}

/// Writes `decisions-applied.json` and returns the summary line's part about it.
fn decisions_summary(
    out: &Path,
    applied: &review::DecisionsApplied,
) -> anyhow::Result<serde_json::Value> {
    write_json(&out.join(review::DECISIONS_APPLIED), applied)?;
    Ok(serde_json::json!({
        "n_decisions": applied.record.decisions.len(),
        "kept_added": applied.record.kept_added,
        "kept_removed": applied.record.kept_removed,
        "n_kept_before": applied.n_kept_before,
        "n_kept_after": applied.n_kept_after,
        "threshold_before": applied.threshold_before,
        "threshold_after": applied.threshold_after,
    }))
}

/// Writes `training_images.json` (sample id → image path): where `llb predict`'s report finds
/// the training images a model's memory-bank patches came from.
fn write_training_images(out: &Path, dataset: &Dataset) -> anyhow::Result<()> {
    let paths: BTreeMap<&SampleId, &Path> =
        dataset.train.iter().map(|s| (&s.id, s.image_path.as_path())).collect();
    Ok(write_json(&out.join(review::TRAINING_IMAGES), &paths)?)
}

/// Writes the stage-1 outputs: the score table, `purification.csv` (most suspicious first, with
/// the final verdict and any decision that set it), the fused-score histogram and, when hidden
/// labels exist, the purity report.
pub(crate) fn write_screening(
    out: &Path,
    dataset: &Dataset,
    screening: Option<&Screening>,
    decisions: Option<&Decisions>,
) -> anyhow::Result<()> {
    let Some(screening) = screening else { return Ok(()) };
    screening.table.save_csv(&out.join("score_table.csv"))?;
    let selection = &screening.purification.selection;
    let kept: std::collections::BTreeSet<_> = selection.kept.iter().collect();
    let path_of: BTreeMap<_, _> = dataset.train.iter().map(|s| (&s.id, &s.image_path)).collect();
    let mut rows: Vec<(f32, &llb_types::SampleId)> =
        screening.purification.fused.iter().map(|(id, score)| (score, id)).collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    // A CSV writer, so that ids and paths with commas, quotes or line breaks stay one field.
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["sample_id", "path", "fused_score", "verdict", "decision"])?;
    for (score, id) in rows {
        let path = path_of.get(id).map(|p| p.display().to_string()).unwrap_or_default();
        let verdict = if kept.contains(id) { "kept" } else { "dropped" };
        let decision = decisions.and_then(|d| d.by_id.get(id)).map_or("", |d| d.as_str());
        csv.write_record([id.as_str(), &path, &score.to_string(), verdict, decision])?;
    }
    let csv = csv.into_inner().map_err(|e| anyhow::anyhow!("writing purification.csv: {e}"))?;
    llb_types::atomic::write(&out.join("purification.csv"), &csv)?;
    let labels: BTreeMap<_, Label> =
        dataset.train.iter().filter_map(|s| s.label.map(|l| (s.id.clone(), l))).collect();
    let labelled = !labels.is_empty() && labels.len() == dataset.train.len();
    let histogram = Histogram::new(&screening.purification.fused, labelled.then_some(&labels), 40)?
        .with_cut(selection.cut);
    crate::plot::histogram_png(&out.join("fused_scores.png"), &histogram, "fused stage-1 scores")?;
    if labelled {
        let report = PurityReport::new(selection, &labels)?;
        let quality = screening_quality(&screening.purification.fused, &labels)?;
        let json = serde_json::json!({"purity": report, "screening": quality});
        write_json(&out.join("purity.json"), &json)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_args::settings_from_flags;

    fn label(flags: &[&str]) -> String {
        submodel_label(&settings_from_flags(flags)).unwrap()
    }

    #[test]
    fn the_review_page_names_the_screener_not_the_final_detector() {
        assert_eq!(label(&[]), "patchcore (random 10 % bank, nearest)");
        assert_eq!(label(&["--submodel", "same"]), "patchcore (greedy coreset 10 % bank, nearest)");
        assert_eq!(label(&["--detector", "softpatch", "--submodel", "same"]), "softpatch");
    }
}
