//! Where training and test images come from: `--train DIR` or `--data KIND:ROOT`.

use crate::metrics_cmd::bad;
use llb_data::{ContaminationConfig, Dataset, RealIadSplit, Sample};
use std::path::PathBuf;

/// Data-set arguments shared by `fit`, `purify` and `eval`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DataArgs {
    /// A folder of unlabeled training images (searched recursively).
    #[arg(long, conflicts_with = "data")]
    pub(crate) train: Option<PathBuf>,
    /// A labelled data set: `mvtec:ROOT`, `visa:ROOT` or `realiad:ROOT` (the built-in benchmark
    /// has the MVTec AD layout).
    #[arg(long)]
    pub(crate) data: Option<String>,
    /// Category (MVTec AD, Real-IAD, benchmark) or object (VisA).
    #[arg(long)]
    pub(crate) category: Option<String>,
    /// Real-IAD split folder, e.g. `realiad_jsons_fuiad_0.2`.
    #[arg(long, default_value = "realiad_jsons")]
    pub(crate) split: String,
    /// Contaminate a clean training set FUIAD-style: move test anomalies into training until this
    /// fraction of the training images is anomalous.
    #[arg(long)]
    pub(crate) contamination: Option<f64>,
    /// Seed of the contamination draw.
    #[arg(long, default_value_t = 0)]
    pub(crate) contamination_seed: u64,
}

impl DataArgs {
    /// Reads the data set the arguments name.
    pub(crate) fn load(&self) -> anyhow::Result<Dataset> {
        let dataset = match (&self.train, &self.data) {
            (Some(dir), None) => {
                let train = llb_data::read_image_folder(dir)?;
                Dataset {
                    category: "folder".into(),
                    root: dir.clone(),
                    train,
                    test: Vec::new(),
                    pool: Vec::new(),
                    contamination: None,
                }
            }
            (None, Some(spec)) => {
                let (kind, root) = spec.split_once(':').ok_or_else(|| {
                    bad(format!("--data `{spec}`: expected KIND:ROOT, e.g. mvtec:/data/mvtec"))
                })?;
                let root = PathBuf::from(root);
                let category =
                    self.category.as_deref().ok_or_else(|| bad("--data needs --category"))?;
                match kind {
                    "mvtec" => llb_data::read_mvtec(&root, category)?,
                    "visa" => llb_data::read_visa(&root, category)?,
                    "realiad" => {
                        use RealIadSplit::*;
                        let all = [Standard, SingleView, Fuiad00, Fuiad01, Fuiad02, Fuiad04];
                        let split = all
                            .into_iter()
                            .find(|s| s.json_folder() == self.split)
                            .ok_or_else(|| {
                                let names: Vec<_> = all.iter().map(|s| s.json_folder()).collect();
                                bad(format!(
                                    "--split `{}`: expected one of {}",
                                    self.split,
                                    names.join(", ")
                                ))
                            })?;
                        llb_data::read_realiad(&root, split, category)?
                    }
                    other => {
                        return Err(bad(format!(
                            "--data kind `{other}`: expected mvtec, visa or realiad"
                        )));
                    }
                }
            }
            _ => return Err(bad("give either --train DIR or --data KIND:ROOT")),
        };
        match self.contamination {
            Some(ratio) => Ok(llb_data::contaminate(
                dataset,
                &ContaminationConfig { contamination_ratio: ratio, seed: self.contamination_seed },
            )?),
            None => Ok(dataset),
        }
    }
}

/// The training samples as models may see them: hidden labels stay in the data set for reports.
pub(crate) fn groups_of(
    samples: &[Sample],
    ids: &[llb_types::SampleId],
) -> Vec<Option<llb_types::GroupId>> {
    let by_id: std::collections::BTreeMap<_, _> =
        samples.iter().map(|s| (&s.id, s.group.clone())).collect();
    ids.iter().map(|id| by_id.get(id).cloned().flatten()).collect()
}
