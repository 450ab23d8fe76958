//! [`ResultRow`] and the [`Results`] file that holds them.

use crate::ScreeningQuality;
use llb_purify::PurityReport;
use serde::{Deserialize, Serialize};

/// One fitted and evaluated configuration: a (category, α, seed, method, ablation) cell of an
/// experiment's grid. Metrics are fractions in `[0, 1]`; pixel metrics are `None` for a data set
/// without masks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultRow {
    /// SHA-256 of everything that determines the row's numbers (data set, category, α, seed,
    /// pixel grid, full settings): the resume key. Labels are not part of it.
    pub key: String,
    /// Category.
    pub category: String,
    /// α asked for.
    pub contamination_ratio: f64,
    /// α achieved (fewer anomalies than asked when the data set runs out).
    pub achieved_ratio: f64,
    /// The replicate: contamination draw and every seed of the settings.
    pub seed: u64,
    /// `<backbone>` (baseline) or `<backbone>+llb(<selection rule>)` (purified).
    pub method: String,
    /// The varied factor, for ablation rows.
    pub ablation: Option<String>,
    /// Training images.
    pub n_train: usize,
    /// Anomalous training images (hidden labels).
    pub n_train_anomalous: usize,
    /// Images the final model was fitted on.
    pub n_kept: usize,
    /// Anomalous images among them.
    pub n_kept_anomalous: usize,
    /// Test images.
    pub n_test: usize,
    /// Image AUROC.
    pub i_auroc: f64,
    /// Image average precision.
    pub i_ap: f64,
    /// Image F1max.
    pub i_f1max: f64,
    /// Pixel AUROC.
    pub p_auroc: Option<f64>,
    /// Pixel average precision.
    pub p_ap: Option<f64>,
    /// Pixel F1max.
    pub p_f1max: Option<f64>,
    /// Pixel AUPRO (FPR ≤ 0.3).
    pub p_aupro: Option<f64>,
    /// Side of the square maps the pixel metrics were computed at.
    pub pixel_resolution_px: usize,
    /// Purity of the kept set, for purified rows.
    pub purity: Option<PurityReport>,
    /// How well the fused stage-1 scores rank the training set against its hidden labels, for
    /// purified rows on contaminated training sets.
    pub screening: Option<ScreeningQuality>,
    /// Wall-clock seconds of stage 1 + stage 2 (features excluded: they are cached and shared).
    pub fit_seconds: f64,
}

/// A results file: the manifest that produced the rows (of the reader's type `M`), and the rows
/// in the manifest's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results<M> {
    /// The manifest that produced the rows.
    pub manifest: M,
    /// One row per (category, α, seed, method, ablation), in the manifest's order.
    pub rows: Vec<ResultRow>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    fn committed_results() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter(|p| !p.to_string_lossy().ends_with(".manifest.json"))
            .collect();
        files.sort();
        files
    }

    /// Every committed `results/*.json` parses, and writing it back gives the same JSON value:
    /// no field is dropped, renamed or defaulted on the way.
    #[test]
    fn every_committed_results_file_round_trips() {
        let files = committed_results();
        assert!(!files.is_empty(), "no results/*.json found");
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let original: Value = serde_json::from_str(&text).unwrap();
            let parsed: Results<Value> =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!parsed.rows.is_empty(), "{}", path.display());
            assert_eq!(serde_json::to_value(&parsed).unwrap(), original, "{}", path.display());
        }
    }

    /// A field the schema does not know is an error, not silently ignored.
    #[test]
    fn unknown_and_missing_fields_are_errors() {
        let path = &committed_results()[0];
        let mut value: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let row = value["rows"][0].clone();
        assert!(serde_json::from_value::<ResultRow>(row.clone()).is_ok());
        let mut extra = row.clone();
        extra["i_auroc_v2"] = 0.5.into();
        assert!(serde_json::from_value::<ResultRow>(extra).is_err());
        let mut missing = row;
        missing.as_object_mut().unwrap().remove("i_auroc");
        assert!(serde_json::from_value::<ResultRow>(missing).is_err());
        value["extra"] = Value::Null;
        assert!(serde_json::from_value::<Results<Value>>(value).is_err());
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync + 'static>() {}
        check::<ResultRow>();
        check::<Results<Value>>();
        check::<ScreeningQuality>();
    }
}
