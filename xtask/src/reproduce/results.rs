//! The result rows `llb experiment` writes (`results/<name>.json`), read back for rendering.
//! Only the fields the tables use are declared; the file may hold more.

use serde::Deserialize;

/// One fitted and evaluated configuration.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Row {
    pub(crate) category: String,
    pub(crate) contamination_ratio: f64,
    pub(crate) achieved_ratio: f64,
    pub(crate) method: String,
    pub(crate) ablation: Option<String>,
    pub(crate) n_train: usize,
    pub(crate) n_train_anomalous: usize,
    pub(crate) n_kept: usize,
    pub(crate) n_kept_anomalous: usize,
    pub(crate) i_auroc: f64,
    pub(crate) i_ap: f64,
    pub(crate) i_f1max: f64,
    pub(crate) p_auroc: Option<f64>,
    pub(crate) p_ap: Option<f64>,
    pub(crate) p_f1max: Option<f64>,
    pub(crate) p_aupro: Option<f64>,
    pub(crate) pixel_resolution_px: usize,
    pub(crate) fit_seconds: f64,
}

/// The whole results file.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Results {
    pub(crate) manifest: Manifest,
    pub(crate) rows: Vec<Row>,
}

/// The parts of the manifest the tables mention.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) name: String,
    pub(crate) contamination_ratios: Vec<f64>,
    pub(crate) ablation_ratios: Vec<f64>,
    pub(crate) backbones: Vec<serde_json::Value>,
}

impl Results {
    /// Parses a results file's text.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    /// Methods in order of first appearance.
    pub(crate) fn methods(&self) -> Vec<String> {
        let mut methods: Vec<String> = Vec::new();
        for row in self.rows.iter().filter(|r| r.ablation.is_none()) {
            if !methods.contains(&row.method) {
                methods.push(row.method.clone());
            }
        }
        methods
    }

    /// Categories, sorted.
    pub(crate) fn categories(&self) -> Vec<String> {
        let mut categories: Vec<String> = self.rows.iter().map(|r| r.category.clone()).collect();
        categories.sort();
        categories.dedup();
        categories
    }

    /// Main-grid rows of one method at one α.
    pub(crate) fn main_rows(&self, method: &str, ratio: f64) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| {
                r.ablation.is_none() && r.method == method && r.contamination_ratio == ratio
            })
            .collect()
    }

    /// Ablation labels in order of first appearance.
    pub(crate) fn ablations(&self) -> Vec<String> {
        let mut labels: Vec<String> = Vec::new();
        for label in self.rows.iter().filter_map(|r| r.ablation.clone()) {
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        labels
    }
}

/// Mean of a metric over rows (`None` when a row lacks it or there are no rows).
pub(crate) fn mean(rows: &[&Row], metric: impl Fn(&Row) -> Option<f64>) -> Option<f64> {
    if rows.is_empty() {
        return None;
    }
    let values: Option<Vec<f64>> = rows.iter().map(|r| metric(r)).collect();
    values.map(|v| v.iter().sum::<f64>() / v.len() as f64)
}
