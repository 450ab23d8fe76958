//! The built-in selection rules, one enum variant each.

use super::gmm;
use crate::spec::{no_params, number_param};
use crate::{Error, FusedScores, Result, RuleSpec, Selection, Selector, stats};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// Consistency constant that makes the MAD estimate σ for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// Consistency constant for the mean absolute deviation, used when the MAD is 0.
const MEAN_AD_TO_SIGMA: f64 = 1.253314;

/// The built-in selection rules. Each depends only on the multiset of (id, fused score) pairs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum BuiltinSelector {
    /// `keep-fraction(t)`: sort by fused score ascending (ties by id) and keep the ⌊t·N⌋ lowest,
    /// the paper's rule.
    /// t is a keep fraction, not a score threshold.
    /// ⌊t·N⌋ is computed as `floor(t·N + 1e-9)` so that decimal fractions such as 0.29·100 give 29
    /// despite binary rounding; keeping 0 samples is an error.
    KeepFraction {
        /// Fraction t ∈ (0, 1] of the samples to keep.
        keep_fraction: f64,
    },
    /// `mad(z)`: drop samples whose robust z-score (s − median) / (1.4826·MAD) exceeds z.
    /// When the MAD is 0 the scale falls back to 1.2533 × the mean absolute deviation from the
    /// median; when that is 0 too (all scores equal) everything is kept.
    /// Never drops the median, so at least half the samples are kept.
    Mad {
        /// Largest robust z-score z ≥ 0 that is kept.
        max_robust_z: f64,
    },
    /// `gmm-split`: fit a two-component 1-D Gaussian mixture to the fused scores by deterministic
    /// EM (start: means at the quartiles, equal weights, the sample variance) and drop the samples
    /// that the high component claims (posterior > 0.5) above the low component's mean.
    /// Made monotone: the lowest such score and everything above it is dropped.
    /// Falls back to keeping everything when the data show no second mode: fewer than 3 samples,
    /// all equal, a component under one sample's weight, BIC preferring one Gaussian, or Ashman's
    /// D ≤ 2 between the components (EM would otherwise split any unimodal or skewed
    /// distribution and drop its upper tail).
    GmmSplit,
}

impl BuiltinSelector {
    /// The base names of all built-ins, as the registry knows them.
    pub const BASE_NAMES: &'static [&'static str] = &["keep-fraction", "mad", "gmm-split"];

    /// One instance of every built-in (parameters at typical values), for tests and docs.
    pub fn examples() -> Vec<Self> {
        vec![
            Self::KeepFraction { keep_fraction: 0.2 },
            Self::Mad { max_robust_z: 3.5 },
            Self::GmmSplit,
        ]
    }

    /// The base name without parameters, e.g. `keep-fraction`.
    pub fn base_name(&self) -> &'static str {
        match self {
            Self::KeepFraction { .. } => "keep-fraction",
            Self::Mad { .. } => "mad",
            Self::GmmSplit => "gmm-split",
        }
    }

    /// Builds a built-in from its base name and JSON parameters (`null` for none; a number or
    /// `{"keep_fraction": t}` / `{"max_robust_z": z}` for the others).
    ///
    /// # Errors
    /// [`Error::UnknownRule`] listing the built-in names, or [`Error::InvalidParameter`].
    pub fn from_params(name: &str, params: &Value) -> Result<Self> {
        let rule = match name {
            "keep-fraction" => Self::KeepFraction {
                keep_fraction: number_param(name, "keep_fraction", params, "a number in (0, 1]")?,
            },
            "mad" => Self::Mad {
                max_robust_z: number_param(name, "max_robust_z", params, "a finite number ≥ 0")?,
            },
            "gmm-split" => {
                no_params(name, params)?;
                Self::GmmSplit
            }
            _ => {
                return Err(Error::UnknownRule {
                    name: name.to_string(),
                    known: Self::BASE_NAMES.iter().map(|s| s.to_string()).collect(),
                });
            }
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Checks the parameters' ranges.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the rule and parameter.
    pub fn validate(&self) -> Result<()> {
        let bad = |parameter, value: f64, expected| {
            Err(Error::InvalidParameter {
                rule: self.base_name().into(),
                parameter,
                value: value.to_string(),
                expected,
            })
        };
        match *self {
            Self::KeepFraction { keep_fraction: t } if !(t > 0.0 && t <= 1.0) => {
                bad("keep_fraction", t, "a number in (0, 1]")
            }
            Self::Mad { max_robust_z: z } if !(z.is_finite() && z >= 0.0) => {
                bad("max_robust_z", z, "a finite number ≥ 0")
            }
            _ => Ok(()),
        }
    }

    /// The number of samples `keep-fraction(t)` keeps out of `n`.
    pub fn keep_count(keep_fraction: f64, n: usize) -> usize {
        ((keep_fraction * n as f64 + 1e-9).floor() as usize).min(n)
    }
}

impl Selector for BuiltinSelector {
    fn name(&self) -> String {
        match self {
            Self::KeepFraction { keep_fraction } => format!("keep-fraction({keep_fraction})"),
            Self::Mad { max_robust_z } => format!("mad({max_robust_z})"),
            Self::GmmSplit => "gmm-split".into(),
        }
    }

    fn select(&self, fused: &FusedScores) -> Result<Selection> {
        self.validate()?;
        let scores = fused.anomaly_scores();
        let mut keep = vec![true; fused.len()];
        match *self {
            Self::KeepFraction { keep_fraction } => {
                let n_keep = Self::keep_count(keep_fraction, fused.len());
                for &i in &fused.ascending_order()[n_keep..] {
                    keep[i] = false;
                }
            }
            Self::Mad { max_robust_z } => {
                if let Some(limit) = robust_upper_fence(scores, max_robust_z) {
                    for (k, &s) in keep.iter_mut().zip(scores) {
                        *k = f64::from(s) <= limit;
                    }
                }
            }
            Self::GmmSplit => {
                let sorted = stats::sorted(scores.iter().copied());
                if let Some(mix) = gmm::fit(&sorted) {
                    let first_dropped = sorted
                        .iter()
                        .find(|&&x| x > mix.mean[0] && mix.posterior_high(x) > 0.5)
                        .copied();
                    if let Some(limit) = first_dropped {
                        for (k, &s) in keep.iter_mut().zip(scores) {
                            *k = f64::from(s) < limit;
                        }
                    }
                }
            }
        }
        Selection::from_keep_mask(self.name(), fused, &keep)
    }
}

/// The `mad(z)` rule's limit: `median + z · 1.4826 · MAD` of `scores` (computed in `f64`, order
/// independent), with `1.2533 · mean absolute deviation` standing in for `1.4826 · MAD` when the
/// MAD is zero; `None` when every score is equal (no spread to measure). A score above the limit
/// is an outlier.
pub fn robust_upper_fence(scores: &[f32], max_robust_z: f64) -> Option<f64> {
    let sorted = stats::sorted(scores.iter().copied());
    let median = stats::median(&sorted);
    let mut abs_dev: Vec<f64> = sorted.iter().map(|&x| (x - median).abs()).collect();
    abs_dev.sort_by(f64::total_cmp);
    let mad = stats::median(&abs_dev);
    let scale =
        if mad > 0.0 { MAD_TO_SIGMA * mad } else { MEAN_AD_TO_SIGMA * stats::mean(&abs_dev) };
    (scale > 0.0).then_some(median + max_robust_z * scale)
}

impl fmt::Display for BuiltinSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for BuiltinSelector {
    type Err = Error;

    /// Parses a rule name such as `keep-fraction(0.2)`, `mad(3.5)` or `gmm-split`.
    fn from_str(s: &str) -> Result<Self> {
        let spec: RuleSpec = s.parse()?;
        Self::from_params(&spec.name, &spec.params)
    }
}
