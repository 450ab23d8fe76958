//! The run manifest of `llb experiment`: data set, contamination ratios, base settings and
//! ablations, read from a committed JSON file so that a table can be regenerated exactly.

use super::dataset::DatasetSpec;
use anyhow::Context;
use llb_pipeline::{DetectorSettings, FitSettings};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// Name of the run; results go to `<out>/<name>.json`.
    pub(crate) name: String,
    /// The data sets; their categories are the table's rows and must not repeat.
    pub(crate) datasets: Vec<DatasetSpec>,
    /// Fractions α of anomalous training images (FUIAD protocol).
    pub(crate) contamination_ratios: Vec<f64>,
    /// Replicates: each seed draws its own contamination (data sets with a clean training set)
    /// and is every random seed of the backbones (partition, coreset, bank sample, Dinomaly),
    /// so the spread over seeds is the spread a user would see between runs.
    pub(crate) seeds: Vec<u64>,
    /// Side in pixels of the grid every backbone's pixel metrics are computed on; `None` uses
    /// each encoder's input side (not comparable across input sizes).
    #[serde(default)]
    pub(crate) pixel_eval_px: Option<u32>,
    /// The backbones compared, each with its purified settings; every backbone also runs
    /// without stage 1 (the baseline). Ablations vary the first one.
    pub(crate) backbones: Vec<Backbone>,
    /// The α values at which the ablations run.
    pub(crate) ablation_ratios: Vec<f64>,
    /// One-factor-at-a-time variations of the first backbone.
    pub(crate) ablations: Vec<Ablation>,
}

/// One backbone of the comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Backbone {
    /// Column name of the baseline; the purified method is `<name>+llb(<selection rule>)`.
    pub(crate) name: String,
    /// Encoder, detector and stage-1 settings (seeds are replaced by each of the manifest's).
    pub(crate) settings: FitSettings,
}

/// A factor varied in an ablation, with its values.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "vary", content = "values", rename_all = "kebab-case")]
pub(crate) enum Ablation {
    /// Number of sub-models K.
    K(Vec<usize>),
    /// `keep-fraction(t)` selection with these t.
    KeepFraction(Vec<f64>),
    /// Fusion rules by name.
    Fusion(Vec<String>),
    /// Selection rules by name.
    Selection(Vec<String>),
    /// Sub-model detectors (stage 1), each with the label it gets in the tables.
    Submodel(Vec<LabelledDetector>),
    /// Screening rounds (stage 1 refitted on the images the previous round kept).
    Rounds(Vec<usize>),
}

/// A detector with a short label for ablation tables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LabelledDetector {
    /// The label, e.g. `patchcore-greedy`.
    pub(crate) label: String,
    /// The detector.
    pub(crate) detector: DetectorSettings,
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub(crate) fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("parsing the manifest {}", path.display()))?;
        anyhow::ensure!(!manifest.backbones.is_empty(), "{}: no backbones", path.display());
        anyhow::ensure!(!manifest.seeds.is_empty(), "{}: no seeds", path.display());
        let mut seen = std::collections::BTreeSet::new();
        for category in manifest.datasets.iter().flat_map(DatasetSpec::categories) {
            anyhow::ensure!(
                seen.insert(category.clone()),
                "{}: category `{category}` appears in two data sets",
                path.display()
            );
        }
        for (i, backbone) in manifest.backbones.iter().enumerate() {
            anyhow::ensure!(
                backbone.settings.purify.is_some(),
                "{}: `backbones[{i}].settings.purify` must be set",
                path.display()
            );
            if let Some(purify) = &backbone.settings.purify {
                purify
                    .rules()
                    .map(|_| ())
                    .with_context(|| format!("{}: backbones[{i}]", path.display()))?;
            }
        }
        for ablation in &manifest.ablations {
            for (label, settings) in ablation.variants(&manifest.backbones[0].settings) {
                if let Some(purify) = &settings.purify {
                    purify
                        .rules()
                        .map(|_| ())
                        .with_context(|| format!("{}: ablation {label}", path.display()))?;
                }
            }
        }
        anyhow::ensure!(
            !manifest.contamination_ratios.is_empty(),
            "{}: no contamination_ratios",
            path.display()
        );
        Ok(manifest)
    }
}

impl Ablation {
    /// `(label, settings)` for each value, applied to `base`.
    pub(crate) fn variants(&self, base: &FitSettings) -> Vec<(String, FitSettings)> {
        let with = |label: String, f: &dyn Fn(&mut llb_pipeline::PurifySettings)| {
            let mut settings = base.clone();
            if let Some(purify) = settings.purify.as_mut() {
                f(purify);
            }
            (label, settings)
        };
        match self {
            Ablation::K(values) => values
                .iter()
                .map(|&k| with(format!("k={k}"), &|p| p.stage1.partition.k = k))
                .collect(),
            Ablation::KeepFraction(values) => values
                .iter()
                .map(|&t| with(format!("t={t}"), &|p| p.selection = format!("keep-fraction({t})")))
                .collect(),
            Ablation::Fusion(values) => values
                .iter()
                .map(|rule| with(format!("fusion={rule}"), &|p| p.fusion = rule.clone()))
                .collect(),
            Ablation::Selection(values) => values
                .iter()
                .map(|rule| with(format!("selection={rule}"), &|p| p.selection = rule.clone()))
                .collect(),
            Ablation::Submodel(values) => values
                .iter()
                .map(|d| {
                    with(format!("submodel={}", d.label), &|p| {
                        p.submodel = Some(d.detector.clone())
                    })
                })
                .collect(),
            Ablation::Rounds(values) => {
                values.iter().map(|&r| with(format!("rounds={r}"), &|p| p.rounds = r)).collect()
            }
        }
    }
}
