//! The result rows `llb experiment` writes (`results/<name>.json`), read back for rendering
//! through the schema both sides share (llb-results). Of the manifest, only the parts the tables
//! mention are declared.

use super::stats::Estimate;
use serde::Deserialize;

/// One fitted and evaluated configuration: the schema `llb experiment` writes (llb-results).
pub(crate) type Row = llb_results::ResultRow;

/// Stage-1 screening quality of a purified row.
pub(crate) type Screening = llb_results::ScreeningQuality;

/// The whole results file: its rows, and the parts of its manifest the tables mention.
#[derive(Clone, Debug)]
pub(crate) struct Results {
    pub(crate) manifest: Manifest,
    pub(crate) rows: Vec<Row>,
}

/// The parts of the manifest the tables mention.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) name: String,
    pub(crate) contamination_ratios: Vec<f64>,
    pub(crate) seeds: Vec<u64>,
    pub(crate) ablation_ratios: Vec<f64>,
    pub(crate) backbones: Vec<Backbone>,
}

/// A backbone: its column name and settings.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Backbone {
    pub(crate) name: String,
    pub(crate) settings: serde_json::Value,
}

/// Which rows: one method (and ablation label, `None` for the main grid) at one α, optionally
/// one category.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sel<'a> {
    pub(crate) method: &'a str,
    pub(crate) ablation: Option<&'a str>,
    pub(crate) ratio: f64,
    pub(crate) category: Option<&'a str>,
}

impl<'a> Sel<'a> {
    /// The main-grid rows of `method` at `ratio`, all categories.
    pub(crate) fn main(method: &'a str, ratio: f64) -> Self {
        Self { method, ablation: None, ratio, category: None }
    }

    /// The same selection at another α.
    pub(crate) fn at(self, ratio: f64) -> Self {
        Self { ratio, ..self }
    }

    /// The same selection restricted to one category.
    pub(crate) fn in_category(self, category: &'a str) -> Self {
        Self { category: Some(category), ..self }
    }
}

/// Reads one number of a row.
pub(crate) type Metric = fn(&Row) -> Option<f64>;

impl Results {
    /// Parses a results file's text.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let file: llb_results::Results<Manifest> = serde_json::from_str(text)?;
        Ok(Self { manifest: file.manifest, rows: file.rows })
    }

    /// Main-grid methods in order of first appearance.
    pub(crate) fn methods(&self) -> Vec<String> {
        unique(self.rows.iter().filter(|r| r.ablation.is_none()).map(|r| r.method.clone()))
    }

    /// Categories, sorted.
    pub(crate) fn categories(&self) -> Vec<String> {
        let mut categories = unique(self.rows.iter().map(|r| r.category.clone()));
        categories.sort();
        categories
    }

    /// Ablation labels in order of first appearance.
    pub(crate) fn ablations(&self) -> Vec<String> {
        unique(self.rows.iter().filter_map(|r| r.ablation.clone()))
    }

    /// The row of `sel` for one category and seed.
    pub(crate) fn row(&self, sel: Sel<'_>, category: &str, seed: u64) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.method == sel.method
                && r.ablation.as_deref() == sel.ablation
                && r.contamination_ratio == sel.ratio
                && r.category == category
                && r.seed == seed
        })
    }

    /// Every row of `sel` (all seeds).
    pub(crate) fn rows_of(&self, sel: Sel<'_>) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| {
                r.method == sel.method
                    && r.ablation.as_deref() == sel.ablation
                    && r.contamination_ratio == sel.ratio
                    && sel.category.is_none_or(|c| c == r.category)
            })
            .collect()
    }

    /// Categories of a selection: the one it names, or all.
    fn categories_of(&self, category: Option<&str>) -> Vec<String> {
        category.map_or_else(|| self.categories(), |c| vec![c.to_owned()])
    }

    /// One value per seed: the mean over categories of `f(category, seed)` where it is defined
    /// (seeds where it is nowhere defined are left out).
    pub(crate) fn per_seed(
        &self,
        category: Option<&str>,
        f: impl Fn(&str, u64) -> Option<f64>,
    ) -> Vec<f64> {
        let categories = self.categories_of(category);
        self.manifest
            .seeds
            .iter()
            .filter_map(|&seed| {
                let values: Vec<f64> = categories.iter().filter_map(|c| f(c, seed)).collect();
                (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
            })
            .collect()
    }

    /// Mean ± 95 % interval over seeds of the category mean of `metric` on `sel`.
    pub(crate) fn estimate(&self, sel: Sel<'_>, metric: Metric) -> Option<Estimate> {
        Estimate::of(&self.per_seed(sel.category, |c, s| self.row(sel, c, s).and_then(metric)))
    }

    /// The paired difference `a − b` of `metric`, formed per (category, seed).
    pub(crate) fn paired(&self, a: Sel<'_>, b: Sel<'_>, metric: Metric) -> Option<Estimate> {
        Estimate::of(&self.per_seed(a.category, |c, s| {
            Some(metric(self.row(a, c, s)?)? - metric(self.row(b, c, s)?)?)
        }))
    }

    /// Per seed, `Σ_c (a − b) / Σ_c (clean − b)`: the share of what contamination costs `b`
    /// (relative to `clean`) that `a` wins back; seeds whose cost is not positive are left out.
    pub(crate) fn recovered(
        &self,
        a: Sel<'_>,
        b: Sel<'_>,
        clean: Sel<'_>,
        metric: Metric,
    ) -> Option<Estimate> {
        let categories = self.categories_of(a.category);
        let values: Vec<f64> = self
            .manifest
            .seeds
            .iter()
            .filter_map(|&s| {
                let (mut won, mut lost) = (0.0, 0.0);
                for c in &categories {
                    let get = |sel: Sel<'_>| self.row(sel, c, s).and_then(metric);
                    if let (Some(va), Some(vb), Some(vc)) = (get(a), get(b), get(clean)) {
                        won += va - vb;
                        lost += vc - vb;
                    }
                }
                (lost > 0.0).then_some(won / lost)
            })
            .collect();
        Estimate::of(&values)
    }
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
