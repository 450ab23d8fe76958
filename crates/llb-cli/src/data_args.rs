//! Where training and test images come from: `--train DIR` or `--data KIND:ROOT`.

use crate::metrics_cmd::bad;
use llb_data::{ContaminationConfig, Dataset, RealIadSplit};
use std::path::PathBuf;

/// Data-set arguments shared by `fit`, `purify` and `eval`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DataArgs {
    /// A folder of unlabeled training images (searched recursively).
    #[arg(long, conflicts_with = "data")]
    pub(crate) train: Option<PathBuf>,
    /// A labelled data set: `mvtec:ROOT`, `visa:ROOT`, `realiad:ROOT` or `elpv:ROOT` (the built-in
    /// benchmark has the MVTec AD layout; ELPV's ROOT holds `labels.csv` and `images/`, e.g.
    /// `$LLB_CACHE/images/elpv` after `llb fetch --only elpv`, split by `ElpvConfig::llb_v2`).
    #[arg(long)]
    pub(crate) data: Option<String>,
    /// Category (MVTec AD, Real-IAD, benchmark), object (VisA) or cell type (ELPV: mono, poly).
    #[arg(long)]
    pub(crate) category: Option<String>,
    /// Real-IAD split folder, e.g. `realiad_jsons_fuiad_0.2`.
    #[arg(long, default_value = "realiad_jsons")]
    pub(crate) split: String,
    /// Contaminate a clean training set until this fraction of the training images is anomalous:
    /// anomalies come from the data set's pool (benchmark v2, ELPV; the test set stays fixed) or,
    /// without one, move from the test set (FUIAD).
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
                    "elpv" => {
                        let cell_type =
                            llb_data::ElpvCellType::from_name(category).ok_or_else(|| {
                                bad(format!("--category `{category}`: ELPV has mono and poly"))
                            })?;
                        llb_data::read_elpv(&root, &llb_data::ElpvConfig::llb_v2(cell_type))?
                    }
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
                            "--data kind `{other}`: expected mvtec, visa, realiad or elpv"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(data: &str, category: &str) -> DataArgs {
        DataArgs {
            train: None,
            data: Some(data.to_owned()),
            category: Some(category.to_owned()),
            split: "realiad_jsons".into(),
            contamination: Some(0.25),
            contamination_seed: 0,
        }
    }

    #[test]
    fn elpv_data_reads_the_v2_split_and_contaminates_from_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        let mut labels = String::new();
        for i in 0..550 {
            let probability = if i < 420 { "0.0" } else { "1.0" };
            labels.push_str(&format!("images/cell{i:04}.png  {probability}  poly\n"));
            std::fs::write(dir.path().join(format!("images/cell{i:04}.png")), b"png").unwrap();
        }
        std::fs::write(dir.path().join("labels.csv"), labels).unwrap();
        let data = format!("elpv:{}", dir.path().display());
        // 420 normals: 100 test and 300 training cells; 130 defective: 100 test, 30 in the pool,
        // all drawn since α = 0.25 asks for 100.
        let d = args(&data, "poly").load().unwrap();
        assert_eq!((d.category.as_str(), d.test.len(), d.n_test_anomalous()), ("poly", 200, 100));
        assert_eq!((d.train.len(), d.n_train_anomalous(), d.pool.len()), (330, 30, 0));
        let err = args(&data, "mono").load().unwrap_err();
        assert!(err.to_string().contains("n_test_normal"), "{err}");
        let err = args(&data, "thin-film").load().unwrap_err();
        assert!(err.to_string().contains("ELPV has mono and poly"), "{err}");
    }
}
