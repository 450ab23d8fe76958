//! The conformance kit run on every built-in rule, and on broken rules it must reject.

use crate::testing::{check_aggregator, check_selector, fixture_fused};
use crate::{
    Aggregator, BuiltinAggregator, BuiltinSelector, FusedScores, Result, ScoreTable, Selection,
    Selector,
};

#[test]
fn every_builtin_aggregator_conforms() {
    let mut rules = BuiltinAggregator::examples();
    rules.push(BuiltinAggregator::TrimmedMean { trim_fraction: 0.4 });
    for rule in rules {
        if let Err(e) = check_aggregator(&rule) {
            panic!("{e}");
        }
    }
}

#[test]
fn every_builtin_selector_conforms() {
    let mut rules = BuiltinSelector::examples();
    rules.extend([
        BuiltinSelector::KeepFraction { keep_fraction: 1.0 },
        BuiltinSelector::Mad { max_robust_z: 0.0 },
    ]);
    for rule in rules {
        if let Err(e) = check_selector(&rule) {
            panic!("{e}");
        }
    }
}

/// Adds a tiny amount per row position: deterministic, but not permutation-equivariant.
struct PositionBiased;

impl Aggregator for PositionBiased {
    fn name(&self) -> String {
        "position-biased".into()
    }

    fn fuse(&self, table: &ScoreTable) -> Result<FusedScores> {
        let scores = table
            .rows()
            .enumerate()
            .map(|(i, (_, row))| row[0].anomaly_score + 1e-3 * i as f32)
            .collect();
        FusedScores::new(self.name(), table.sample_ids().to_vec(), scores)
    }
}

/// Sums each column in row order: equivariant in exact arithmetic, but not bit for bit.
struct NaiveColumnMean;

impl Aggregator for NaiveColumnMean {
    fn name(&self) -> String {
        "naive-centred".into()
    }

    fn fuse(&self, table: &ScoreTable) -> Result<FusedScores> {
        let column = table.column_scores(0);
        let mean = column.iter().sum::<f32>() / column.len() as f32;
        let scores = column.iter().map(|s| (s - mean) * 1e3).collect();
        FusedScores::new(self.name(), table.sample_ids().to_vec(), scores)
    }
}

/// The official code's defect in miniature: keeps the first entries of the input order.
struct KeepsInputPrefix;

impl Selector for KeepsInputPrefix {
    fn name(&self) -> String {
        "keeps-input-prefix".into()
    }

    fn select(&self, fused: &FusedScores) -> Result<Selection> {
        let half = fused.len().div_ceil(2);
        let kept = fused.sample_ids()[..half].to_vec();
        let dropped = fused.sample_ids()[half..].to_vec();
        Ok(Selection { rule: self.name(), kept, dropped, cut: 0.0 })
    }
}

#[test]
fn the_kit_rejects_broken_rules() {
    let err = check_aggregator(&PositionBiased).unwrap_err();
    assert_eq!((err.rule.as_str(), err.property), ("position-biased", "permutation equivariance"));
    assert!(check_aggregator(&NaiveColumnMean).is_err(), "row-order sums must be caught");
    let err = check_selector(&KeepsInputPrefix).unwrap_err();
    assert_eq!(err.property, "permutation invariance of the kept set");
    assert!(err.to_string().starts_with("rule `keeps-input-prefix` breaks"));
}

#[test]
fn fixtures_are_stable_and_varied() {
    let fused = fixture_fused();
    assert!(fused.iter().all(|f| f.len() >= 10));
    assert_eq!(fixture_fused(), fused, "fixtures are deterministic");
    assert_eq!(crate::testing::seeded_permutation(5, 9), crate::testing::seeded_permutation(5, 9));
    assert_ne!(crate::testing::seeded_permutation(50, 1), (0..50).collect::<Vec<_>>());
}
