//! The built-in fusion rules, one enum variant each.

use crate::spec::{no_params, number_param};
use crate::{Aggregator, Error, FusedScores, Result, RuleSpec, ScoreCell, ScoreTable, stats};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// The built-in fusion rules. All compute in `f64` over sorted values, so they are exactly
/// permutation-equivariant; the result is cast to `f32`.
///
/// For sample x with raw scores g_1(x)..g_K(x):
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum BuiltinAggregator {
    /// `mean`: mean_j g_j(x), all models (in- and out-of-subset). The paper's and the official
    /// code's rule.
    Mean,
    /// `max`: max_j g_j(x) (commented out in the official code).
    Max,
    /// `max-var`: max_j g_j(x) · var_j g_j(x), population variance (divide by K, as `numpy.var`,
    /// which the official code's commented-out variant calls).
    MaxVar,
    /// `mean-out`: mean of the out-of-subset scores only (models not trained on x).
    /// A sample with no out-of-subset model (e.g. K = 1) is an error, not a silent fallback.
    MeanOut,
    /// `median`: median_j g_j(x); the mean of the middle two for even K.
    Median,
    /// `trimmed-mean(p)`: sort the K scores, drop ⌊p·K⌋ from each end, average the rest
    /// (as `scipy.stats.trim_mean`).
    TrimmedMean {
        /// Fraction p ∈ [0, 0.5) cut from each end.
        trim_fraction: f64,
    },
    /// `rank-mean`: each model's scores become ranks / N over the N samples (ties share their
    /// average rank), then the mean over models. Insensitive to each model's score scale.
    RankMean,
    /// `zscore-mean`: each model's scores are standardised, (g − mean) / std (population std over
    /// the N samples), then averaged over models. A model whose scores are all equal contributes 0.
    ZscoreMean,
}

impl BuiltinAggregator {
    /// The base names of all built-ins, as the registry knows them.
    pub const BASE_NAMES: &'static [&'static str] = &[
        "mean",
        "max",
        "max-var",
        "mean-out",
        "median",
        "trimmed-mean",
        "rank-mean",
        "zscore-mean",
    ];

    /// One instance of every built-in (parameters at typical values), for tests and docs.
    pub fn examples() -> Vec<Self> {
        vec![
            Self::Mean,
            Self::Max,
            Self::MaxVar,
            Self::MeanOut,
            Self::Median,
            Self::TrimmedMean { trim_fraction: 0.1 },
            Self::RankMean,
            Self::ZscoreMean,
        ]
    }

    /// The base name without parameters, e.g. `trimmed-mean`.
    pub fn base_name(&self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Max => "max",
            Self::MaxVar => "max-var",
            Self::MeanOut => "mean-out",
            Self::Median => "median",
            Self::TrimmedMean { .. } => "trimmed-mean",
            Self::RankMean => "rank-mean",
            Self::ZscoreMean => "zscore-mean",
        }
    }

    /// Builds a built-in from its base name and JSON parameters (`null` for none; a number or
    /// `{"trim_fraction": p}` for `trimmed-mean`).
    ///
    /// # Errors
    /// [`Error::UnknownRule`] listing the built-in names, or [`Error::InvalidParameter`].
    pub fn from_params(name: &str, params: &Value) -> Result<Self> {
        let rule = match name {
            "trimmed-mean" => Self::TrimmedMean {
                trim_fraction: number_param(name, "trim_fraction", params, "a number in [0, 0.5)")?,
            },
            _ => {
                let rule = match name {
                    "mean" => Self::Mean,
                    "max" => Self::Max,
                    "max-var" => Self::MaxVar,
                    "mean-out" => Self::MeanOut,
                    "median" => Self::Median,
                    "rank-mean" => Self::RankMean,
                    "zscore-mean" => Self::ZscoreMean,
                    _ => {
                        return Err(Error::UnknownRule {
                            name: name.to_string(),
                            known: Self::BASE_NAMES.iter().map(|s| s.to_string()).collect(),
                        });
                    }
                };
                no_params(name, params)?;
                rule
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
        if let Self::TrimmedMean { trim_fraction } = *self
            && !(0.0..0.5).contains(&trim_fraction)
        {
            return Err(Error::InvalidParameter {
                rule: self.base_name().into(),
                parameter: "trim_fraction",
                value: trim_fraction.to_string(),
                expected: "a number in [0, 0.5)",
            });
        }
        Ok(())
    }

    /// Fuses one row of K cells (row rules only).
    fn fuse_row(&self, table: &ScoreTable, sample: usize) -> Result<f64> {
        let row: &[ScoreCell] = table.row(sample);
        let sorted = stats::sorted(row.iter().map(|c| c.anomaly_score));
        let k = sorted.len();
        Ok(match *self {
            Self::Mean => stats::mean(&sorted),
            Self::Max => sorted[k - 1],
            Self::MaxVar => sorted[k - 1] * stats::variance(&sorted),
            Self::Median => stats::median(&sorted),
            Self::TrimmedMean { trim_fraction } => {
                let cut = (trim_fraction * k as f64).floor() as usize;
                stats::mean(&sorted[cut..k - cut])
            }
            Self::MeanOut => {
                let out =
                    stats::sorted(row.iter().filter(|c| !c.in_subset).map(|c| c.anomaly_score));
                if out.is_empty() {
                    return Err(Error::NoOutOfSubsetModel {
                        rule: self.name(),
                        sample_id: table.sample_ids()[sample].clone(),
                    });
                }
                stats::mean(&out)
            }
            Self::RankMean | Self::ZscoreMean => {
                unreachable!("column rules are fused by fuse_columns")
            }
        })
    }

    /// Transforms every column, then averages each row over models (column rules only).
    fn fuse_columns(&self, table: &ScoreTable) -> Vec<f64> {
        let n = table.n_samples();
        let mut columns = Vec::with_capacity(table.n_models());
        for m in 0..table.n_models() {
            let scores = table.column_scores(m);
            let column: Vec<f64> = match self {
                Self::RankMean => {
                    stats::average_ranks(&scores).into_iter().map(|r| r / n as f64).collect()
                }
                _ => {
                    let sorted = stats::sorted(scores.iter().copied());
                    if sorted[0] == sorted[n - 1] {
                        vec![0.0; n]
                    } else {
                        let mean = stats::mean(&sorted);
                        let std = stats::variance(&sorted).sqrt();
                        scores.iter().map(|&s| (f64::from(s) - mean) / std).collect()
                    }
                }
            };
            columns.push(column);
        }
        (0..n).map(|i| columns.iter().map(|c| c[i]).sum::<f64>() / columns.len() as f64).collect()
    }
}

impl Aggregator for BuiltinAggregator {
    fn name(&self) -> String {
        match self {
            Self::TrimmedMean { trim_fraction } => format!("trimmed-mean({trim_fraction})"),
            other => other.base_name().to_string(),
        }
    }

    fn fuse(&self, table: &ScoreTable) -> Result<FusedScores> {
        self.validate()?;
        let fused: Vec<f64> = match self {
            Self::RankMean | Self::ZscoreMean => self.fuse_columns(table),
            _ => (0..table.n_samples()).map(|i| self.fuse_row(table, i)).collect::<Result<_>>()?,
        };
        FusedScores::new(
            self.name(),
            table.sample_ids().to_vec(),
            fused.into_iter().map(|s| s as f32).collect(),
        )
    }
}

impl fmt::Display for BuiltinAggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for BuiltinAggregator {
    type Err = Error;

    /// Parses a rule name such as `mean` or `trimmed-mean(0.1)`.
    fn from_str(s: &str) -> Result<Self> {
        let spec: RuleSpec = s.parse()?;
        Self::from_params(&spec.name, &spec.params)
    }
}
