//! Stage 1 split across jobs: `llb fit --stage1-only --subset k --stage1-dir DIR` fits one of
//! the K sub-models into a store folder, and `llb fit --from-stage1 DIR` assembles stage 1 from
//! it (fusion, selection, stage 2) into the model folder a plain `llb fit` writes.

use crate::review::ReviewMaps;
use llb_pipeline::{Extracted, FitSettings, Stage1Store, screen_submodels};
use llb_types::GroupId;
use std::path::{Path, PathBuf};

/// Options of `llb fit` and `llb purify` that split stage 1 across jobs.
#[derive(Debug, clap::Args)]
pub(crate) struct Stage1Args {
    /// Fit stage-1 sub-models only (all K, or the one `--subset` names) and store their scores
    /// in `--stage1-dir`; no model folder is written. Run once per subset, e.g. as a job array,
    /// then `--from-stage1` with the same folder.
    #[arg(long, requires = "stage1_dir", conflicts_with_all = ["from_stage1", "out", "decisions"])]
    pub(crate) stage1_only: bool,
    /// With `--stage1-only`: the one sub-model to fit, 0-based (0 ≤ k < K).
    #[arg(long, value_name = "k", requires = "stage1_only")]
    pub(crate) subset: Option<usize>,
    /// With `--stage1-only`: the folder the sub-models' scores are stored in (entries are keyed
    /// by image content and full settings, so one folder can serve many data sets).
    #[arg(long, value_name = "DIR", requires = "stage1_only")]
    pub(crate) stage1_dir: Option<PathBuf>,
    /// Take every sub-model's scores from this folder (filled by `--stage1-only` runs with the
    /// same data and settings) instead of fitting them; a missing one is an error naming it.
    #[arg(long, value_name = "DIR")]
    pub(crate) from_stage1: Option<PathBuf>,
}

impl Stage1Args {
    /// The store a fit reads stage 1 from: the `--from-stage1` folder, complete, or else the
    /// resume folder of the cache.
    pub(crate) fn store<'a>(&'a self, resume: &'a Path) -> Stage1Store<'a> {
        match &self.from_stage1 {
            Some(dir) => Stage1Store::Complete(dir),
            None => Stage1Store::Resume(resume),
        }
    }
}

/// Checks the flags against the settings before any image is read: `--subset` must be below K.
pub(crate) fn check(args: &Stage1Args, settings: &FitSettings) -> anyhow::Result<()> {
    if let (Some(subset), Some(purify)) = (args.subset, &settings.purify) {
        let k = purify.stage1.partition.k;
        if subset >= k {
            return Err(llb_submodel::Error::SubsetOutOfRange { subset, k }.into());
        }
    }
    Ok(())
}

/// `--stage1-only`: fits the asked sub-models into `--stage1-dir` (with the review page's small
/// maps, so the assembling fit writes the page a plain fit writes) and prints a JSON summary.
pub(crate) fn fit_subsets(
    args: &Stage1Args,
    train: &Extracted,
    groups: &[Option<GroupId>],
    settings: &FitSettings,
    cache_key: &str,
    maps: &mut ReviewMaps,
) -> anyhow::Result<()> {
    let dir = args.stage1_dir.as_deref().expect("clap requires --stage1-dir with --stage1-only");
    let Some(purify) = &settings.purify else {
        return Err(crate::metrics_cmd::bad("--stage1-only fits stage 1: drop --no-purify"));
    };
    let subsets: Vec<usize> = match args.subset {
        Some(k) => vec![k],
        None => (0..purify.stage1.partition.k).collect(),
    };
    let k = screen_submodels(train, groups, settings, cache_key, dir, &subsets, Some(maps))?;
    let summary = serde_json::json!({
        "stage1_dir": dir,
        "k": k,
        "subsets": subsets,
        "n_train": train.ids.len(),
        "n_skipped": train.failures.len(),
    });
    println!("{summary}");
    Ok(())
}
