//! The conformance kit: properties every fusion and selection rule must have, built-in or not.
//!
//! Enabled by the `testing` feature. A downstream crate checks its own rules with
//! `llb-purify = { version = "0.1", features = ["testing"] }` under `[dev-dependencies]` and:
//!
//! ```
//! # use llb_purify::{BuiltinAggregator, BuiltinSelector};
//! # #[cfg(feature = "testing")] {
//! llb_purify::testing::check_aggregator(&BuiltinAggregator::Mean).unwrap();
//! llb_purify::testing::check_selector(&BuiltinSelector::GmmSplit).unwrap();
//! # }
//! ```
//!
//! Checked properties, on every fixture and on 3 seeded row permutations of it:
//! - aggregators: success on a valid table, one finite score per row with the row's id in row
//!   order, the same bits on a second call, and permuting the rows permutes the scores bit for
//!   bit;
//! - selectors: success, kept and dropped partition the ids with at least one kept, the same
//!   result on a second call, and the same kept id set (and cut) under every permutation.
//!
//! The official LLBNAD selection breaks the last property; this kit is the guard against it.

use crate::{Aggregator, FusedScores, ScoreCell, ScoreTable, Selection, Selector};
use llb_types::SampleId;
use std::collections::BTreeSet;
use std::fmt;

/// Seed of the kit's permutations; fixed so that a failure reproduces.
const KIT_SEED: u64 = 0x11b_5eed;
/// Permutations tried per fixture.
const N_PERMUTATIONS: u64 = 3;

/// A broken property: which rule, which property, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConformanceError {
    /// The rule's name.
    pub rule: String,
    /// The property that does not hold.
    pub property: &'static str,
    /// What the kit observed.
    pub detail: String,
}

impl fmt::Display for ConformanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule `{}` breaks `{}`: {}", self.rule, self.property, self.detail)
    }
}

impl std::error::Error for ConformanceError {}

/// SplitMix64: a tiny, fully specified generator, so the fixtures never change across versions.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A seeded random permutation of `0..n` (Fisher–Yates on SplitMix64).
pub fn seeded_permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

/// Scores rounded to a grid, so that ties occur.
fn grid(x: f64, step: f64) -> f32 {
    ((x / step).round() * step) as f32
}

/// Builds a stage-1-like table: N samples cut into K blocks, each sample in-subset for its block's
/// model, a fraction of "anomalies" scoring higher with more disagreement.
fn stage1_table(n: usize, k: usize, anomaly_every: usize, scale: f64, seed: u64) -> ScoreTable {
    let mut rng = SplitMix64(seed);
    let models = (0..k).map(|j| format!("m{j}")).collect();
    let block = seeded_permutation(n, seed ^ 1);
    let rows = (0..n)
        .map(|i| {
            let anomalous = anomaly_every > 0 && i % anomaly_every == 0;
            let cells = (0..k)
                .map(|j| {
                    let base = if anomalous {
                        0.5 + 0.4 * rng.next_f64()
                    } else {
                        0.1 + 0.1 * rng.next_f64()
                    };
                    ScoreCell {
                        anomaly_score: grid(scale * base, scale * 0.005),
                        in_subset: block[i] % k == j,
                    }
                })
                .collect();
            (SampleId::new(format!("img/{i:03}.png")), cells)
        })
        .collect();
    ScoreTable::new(models, rows).expect("kit fixtures are valid tables")
}

/// The kit's score tables: several sizes and K, ties, a constant column, negative and large scores.
/// Every sample has at least one out-of-subset model.
pub fn fixture_tables() -> Vec<ScoreTable> {
    let mut tables = vec![
        stage1_table(40, 3, 8, 1.0, 1),
        stage1_table(25, 5, 5, 1000.0, 2),
        stage1_table(2, 2, 0, 1.0, 3),
        stage1_table(31, 4, 0, -1.0, 4),
    ];
    // A table with a constant column and heavy ties.
    let rows = (0..9)
        .map(|i| {
            let cells = vec![
                ScoreCell { anomaly_score: 0.25, in_subset: i % 2 == 0 },
                ScoreCell { anomaly_score: (i % 3) as f32, in_subset: i % 2 == 1 },
            ];
            (SampleId::new(format!("tie-{i}")), cells)
        })
        .collect();
    tables.push(ScoreTable::new(vec!["const".into(), "ties".into()], rows).expect("valid fixture"));
    tables
}

/// The kit's fused scores: bimodal, unimodal with outliers, heavy ties, all equal; N ≥ 10 each.
pub fn fixture_fused() -> Vec<FusedScores> {
    let mut rng = SplitMix64(KIT_SEED);
    let make = |name: &str, scores: Vec<f32>| {
        let ids = (0..scores.len()).map(|i| SampleId::new(format!("{name}/{i:03}"))).collect();
        FusedScores::new("fixture", ids, scores).expect("kit fixtures are valid")
    };
    let bimodal = (0..60)
        .map(|i| grid((if i % 6 == 0 { 0.8 } else { 0.2 }) + 0.1 * rng.next_f64(), 0.002))
        .collect();
    let outliers = (0..37)
        .map(
            |i| if i % 12 == 5 { 4.0 + i as f32 } else { grid(-1.0 + 0.5 * rng.next_f64(), 0.001) },
        )
        .collect();
    let ties = (0..12).map(|i| (i % 3) as f32).collect();
    let equal = vec![0.5; 10];
    vec![
        make("bimodal", bimodal),
        make("outliers", outliers),
        make("ties", ties),
        make("equal", equal),
    ]
}

fn fail(rule: &str, property: &'static str, detail: String) -> ConformanceError {
    ConformanceError { rule: rule.to_string(), property, detail }
}

fn bits(scores: &[f32]) -> Vec<u32> {
    scores.iter().map(|s| s.to_bits()).collect()
}

/// Runs [`check_aggregator_on`] on every [`fixture_tables`] table.
///
/// # Errors
/// The first broken property.
pub fn check_aggregator(rule: &dyn Aggregator) -> Result<(), ConformanceError> {
    fixture_tables().iter().try_for_each(|t| check_aggregator_on(rule, t))
}

/// Checks length, ids, finiteness, determinism and permutation equivariance of a fusion rule on
/// one table.
///
/// # Errors
/// The first broken property.
pub fn check_aggregator_on(
    rule: &dyn Aggregator,
    table: &ScoreTable,
) -> Result<(), ConformanceError> {
    let name = rule.name();
    let fuse = |t: &ScoreTable| {
        rule.fuse(t).map_err(|e| fail(&name, "succeeds on a valid table", e.to_string()))
    };
    let fused = fuse(table)?;
    if fused.sample_ids() != table.sample_ids() {
        return Err(fail(
            &name,
            "one score per row, in row order",
            format!("{} scores for {} rows", fused.len(), table.n_samples()),
        ));
    }
    if let Some((id, s)) = fused.iter().find(|(_, s)| !s.is_finite()) {
        return Err(fail(&name, "finite output", format!("sample `{id}` scored {s}")));
    }
    if bits(fuse(table)?.anomaly_scores()) != bits(fused.anomaly_scores()) {
        return Err(fail(&name, "deterministic", "a second call gave different scores".into()));
    }
    for p in 0..N_PERMUTATIONS {
        let order = seeded_permutation(table.n_samples(), KIT_SEED + p);
        let permuted = table.permuted(&order).map_err(|e| fail(&name, "kit", e.to_string()))?;
        let got = fuse(&permuted)?;
        let expected = fused.permuted(&order).map_err(|e| fail(&name, "kit", e.to_string()))?;
        if got.sample_ids() != expected.sample_ids()
            || bits(got.anomaly_scores()) != bits(expected.anomaly_scores())
        {
            let at = (0..got.len()).find(|&i| {
                got.anomaly_scores()[i].to_bits() != expected.anomaly_scores()[i].to_bits()
            });
            return Err(fail(
                &name,
                "permutation equivariance",
                format!(
                    "permutation {p} of a {}×{} table: first difference at row {at:?}",
                    table.n_samples(),
                    table.n_models()
                ),
            ));
        }
    }
    Ok(())
}

/// Runs [`check_selector_on`] on every [`fixture_fused`] input.
///
/// # Errors
/// The first broken property.
pub fn check_selector(rule: &dyn Selector) -> Result<(), ConformanceError> {
    fixture_fused().iter().try_for_each(|f| check_selector_on(rule, f))
}

fn kept_set(selection: &Selection) -> BTreeSet<&SampleId> {
    selection.kept.iter().collect()
}

/// Checks partition, non-emptiness, determinism and permutation invariance of the kept set (and
/// cut) of a selection rule on one input.
///
/// # Errors
/// The first broken property.
pub fn check_selector_on(rule: &dyn Selector, fused: &FusedScores) -> Result<(), ConformanceError> {
    let name = rule.name();
    let select = |f: &FusedScores| {
        rule.select(f).map_err(|e| fail(&name, "succeeds on valid scores", e.to_string()))
    };
    let selection = select(fused)?;
    let mut listed: Vec<&SampleId> = selection.kept.iter().chain(&selection.dropped).collect();
    listed.sort();
    let mut expected: Vec<&SampleId> = fused.sample_ids().iter().collect();
    expected.sort();
    if listed != expected {
        return Err(fail(
            &name,
            "kept and dropped partition the input",
            format!("{} listed, {} given", listed.len(), expected.len()),
        ));
    }
    if selection.kept.is_empty() {
        return Err(fail(&name, "keeps at least one sample", format!("kept 0 of {}", fused.len())));
    }
    if select(fused)? != selection {
        return Err(fail(
            &name,
            "deterministic",
            "a second call gave a different selection".into(),
        ));
    }
    for p in 0..N_PERMUTATIONS {
        let order = seeded_permutation(fused.len(), KIT_SEED + p);
        let permuted = fused.permuted(&order).map_err(|e| fail(&name, "kit", e.to_string()))?;
        let got = select(&permuted)?;
        if kept_set(&got) != kept_set(&selection) || got.cut.to_bits() != selection.cut.to_bits() {
            return Err(fail(
                &name,
                "permutation invariance of the kept set",
                format!(
                    "permutation {p} of {} samples kept {} instead of {} (cut {} vs {})",
                    fused.len(),
                    got.kept.len(),
                    selection.kept.len(),
                    got.cut,
                    selection.cut
                ),
            ));
        }
    }
    Ok(())
}
