//! `llb review`: the review page from a score table alone, e.g. `score_table.csv` of a fitted
//! model with another selection rule (no refit), or scores computed by another tool.

use crate::review::{self, ReviewInput};
use anyhow::Context;
use llb_data::Sample;
use llb_purify::{AggregatorRegistry, ScoreTable, SelectorRegistry};
use std::path::PathBuf;

/// Options of `llb review`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReviewArgs {
    /// A score table (`sample_id,model,anomaly_score,in_subset`), e.g. a model's
    /// `score_table.csv`.
    #[arg(long, value_name = "FILE.csv")]
    pub(crate) scores: PathBuf,
    /// The folder sample ids are relative to, for thumbnails (none without it).
    #[arg(long)]
    pub(crate) images: Option<PathBuf>,
    /// Fusion rule of the sub-models' scores.
    #[arg(long, default_value = "mean")]
    pub(crate) fusion: String,
    /// Selection rule.
    #[arg(long, default_value = llb_pipeline::DEFAULT_SELECTION)]
    pub(crate) selection: String,
    /// Decisions to show as applied (`id,decision` CSV).
    #[arg(long, value_name = "FILE.csv")]
    pub(crate) decisions: Option<PathBuf>,
    /// Output folder for `review.html` and its thumbnails.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

/// Runs `llb review`.
pub(crate) fn run(args: &ReviewArgs) -> anyhow::Result<()> {
    let table = ScoreTable::load_csv(&args.scores)?;
    let aggregator = AggregatorRegistry::with_builtins().build(&args.fusion)?;
    let selector = SelectorRegistry::with_builtins().build(&args.selection)?;
    let mut purification = llb_purify::purify(&table, aggregator.as_ref(), selector.as_ref())?;
    let rule_selection = purification.selection.clone();
    let decisions = args.decisions.as_deref().map(review::load_decisions).transpose()?;
    if let Some(d) = &decisions {
        purification.selection = rule_selection.apply_decisions(&purification.fused, d)?;
    }
    let samples: Vec<Sample> = match &args.images {
        Some(root) => table
            .sample_ids()
            .iter()
            .map(|id| Sample::unlabelled(id.clone(), root.join(id.as_str())))
            .collect(),
        None => Vec::new(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let title = args.scores.display().to_string();
    let input = ReviewInput {
        title,
        detector: "scored".into(),
        table: &table,
        purification: &purification,
        rule_selection: &rule_selection,
        decisions: decisions.as_ref(),
        samples: &samples,
    };
    let page = review::write_review_page(&args.out, &input, None)?;
    let summary = serde_json::json!({
        "review": page,
        "n_samples": table.n_samples(),
        "n_kept": purification.selection.kept.len(),
        "n_dropped": purification.selection.dropped.len(),
    });
    println!("{summary}");
    Ok(())
}
