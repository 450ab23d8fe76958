//! [`PurifyConfig`] with its source-named presets, and the [`purify`] entry point.

use crate::{
    Aggregator, BuiltinAggregator, BuiltinSelector, Error, FusedScores, Result, ScoreTable,
    Selection, Selector,
};
use serde::{Deserialize, Serialize};

/// Which fusion and selection rule stage 1 uses. No `Default`: pick a preset or spell it out.
///
/// The number of sub-models K belongs to stage 1 (`llb-submodel`), not here.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurifyConfig {
    /// The fusion rule.
    pub aggregator: BuiltinAggregator,
    /// The selection rule.
    pub selector: BuiltinSelector,
}

impl PurifyConfig {
    /// The configuration shipped with the official LLBNAD code (GitHub hustzhangyuxin/LLBNAD,
    /// `get_selected_loader` and its smoke-test config: K = 3, `threshold` t = 0.2):
    /// `mean` fusion, `keep-fraction(0.2)` selection.
    pub fn llbnad_released() -> Self {
        Self {
            aggregator: BuiltinAggregator::Mean,
            selector: BuiltinSelector::KeepFraction { keep_fraction: 0.2 },
        }
    }

    /// The setting a config name in the official LLBNAD repository suggests (K = 5, t = 0.4,
    /// 1000 stage-1 iterations; the paper does not publish its values): `mean` fusion,
    /// `keep-fraction(0.4)` selection.
    pub fn llbnad_repo_config() -> Self {
        Self {
            aggregator: BuiltinAggregator::Mean,
            selector: BuiltinSelector::KeepFraction { keep_fraction: 0.4 },
        }
    }

    /// Checks both rules' parameters (a deserialised config is not validated by serde).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        self.aggregator.validate()?;
        self.selector.validate()
    }

    /// Fuses and selects with the configured rules; see [`purify`].
    ///
    /// # Errors
    /// As [`purify`].
    pub fn purify(&self, table: &ScoreTable) -> Result<Purification> {
        purify(table, &self.aggregator, &self.selector)
    }
}

/// The outcome of stage-1 screening: the fused scores and the selection made from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purification {
    /// One fused score per table row.
    pub fused: FusedScores,
    /// The kept (purified) and dropped ids.
    pub selection: Selection,
}

/// Fuses `table` with `aggregator`, then selects with `selector`.
///
/// Checks that the aggregator returned exactly the table's ids in row order and that the
/// selection partitions them, so a faulty downstream rule cannot lose or invent samples.
///
/// # Errors
/// The rules' errors, or [`Error::Rule`] naming the rule that broke its contract.
pub fn purify(
    table: &ScoreTable,
    aggregator: &dyn Aggregator,
    selector: &dyn Selector,
) -> Result<Purification> {
    let fused = aggregator.fuse(table)?;
    if fused.sample_ids() != table.sample_ids() {
        return Err(Error::Rule {
            rule: aggregator.name(),
            message: "fused scores do not list the score table's sample ids in row order".into(),
        });
    }
    let selection = selector.select(&fused)?;
    let mut listed: Vec<_> = selection.kept.iter().chain(&selection.dropped).collect();
    listed.sort();
    let mut expected: Vec<_> = fused.sample_ids().iter().collect();
    expected.sort();
    if listed != expected {
        return Err(Error::Rule {
            rule: selector.name(),
            message: "kept and dropped ids do not partition the input ids".into(),
        });
    }
    Ok(Purification { fused, selection })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_name_their_rules_and_round_trip_through_json() {
        let released = PurifyConfig::llbnad_released();
        assert_eq!(
            (released.aggregator.to_string(), released.selector.to_string()),
            ("mean".into(), "keep-fraction(0.2)".into())
        );
        assert_eq!(PurifyConfig::llbnad_repo_config().selector.to_string(), "keep-fraction(0.4)");
        let json = serde_json::to_string(&released).unwrap();
        assert_eq!(
            json,
            r#"{"aggregator":"mean","selector":{"keep-fraction":{"keep_fraction":0.2}}}"#
        );
        assert_eq!(serde_json::from_str::<PurifyConfig>(&json).unwrap(), released);
        let json =
            r#"{"aggregator":{"trimmed-mean":{"trim_fraction":0.25}},"selector":"gmm-split"}"#;
        let config: PurifyConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.aggregator.to_string(), "trimmed-mean(0.25)");
    }

    #[test]
    fn unknown_fields_and_bad_parameters_are_rejected() {
        let extra = r#"{"aggregator":"mean","selector":"gmm-split","k":3}"#;
        assert!(serde_json::from_str::<PurifyConfig>(extra).is_err());
        let bad = r#"{"aggregator":"mean","selector":{"keep-fraction":{"keep_fraction":2.0}}}"#;
        let config: PurifyConfig = serde_json::from_str(bad).unwrap();
        assert!(config.validate().unwrap_err().to_string().contains("keep_fraction"));
    }
}
