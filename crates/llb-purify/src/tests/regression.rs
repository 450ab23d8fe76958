//! Regression tests, each named for the bug it pins.

use crate::testing::seeded_permutation;
use crate::{BuiltinAggregator, BuiltinSelector, PurifyConfig, ScoreCell, ScoreTable};
use llb_types::SampleId;

/// A 97 × 3 table with many exact ties (scores on a 0.01 grid).
fn table() -> ScoreTable {
    let order = seeded_permutation(97 * 3, 42);
    let rows = (0..97)
        .map(|i| {
            let cells = (0..3)
                .map(|j| ScoreCell {
                    anomaly_score: (order[i * 3 + j] % 23) as f32 / 100.0,
                    in_subset: i % 3 == j,
                })
                .collect();
            (SampleId::new(format!("cat/{i:02}.png")), cells)
        })
        .collect();
    ScoreTable::new(vec!["m0".into(), "m1".into(), "m2".into()], rows).unwrap()
}

/// The official LLBNAD selection indexes a shuffled view twice, so stage 2 trains on images that
/// are not the lowest-scoring ones. Here the kept ids must be exactly the ids of the ⌊t·N⌋
/// smallest fused scores (ties by id), for every shuffle of the table's rows.
#[test]
fn kept_ids_are_the_ids_of_the_lowest_fused_scores_for_any_row_order() {
    let table = table();
    let n = table.n_samples();
    // The reference: row means computed here, sorted by (score, id), the ⌊t·N⌋ first.
    let mut reference: Vec<(f32, SampleId)> = table
        .rows()
        .map(|(id, row)| {
            ((row.iter().map(|c| f64::from(c.anomaly_score)).sum::<f64>() / 3.0) as f32, id.clone())
        })
        .collect();
    reference.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    for keep_fraction in [0.2, 0.4, 0.5, 0.73, 1.0] {
        let config = PurifyConfig {
            aggregator: BuiltinAggregator::Mean,
            selector: BuiltinSelector::KeepFraction { keep_fraction },
        };
        let n_keep = (keep_fraction * n as f64).floor() as usize;
        let mut expected: Vec<SampleId> =
            reference[..n_keep].iter().map(|(_, id)| id.clone()).collect();
        expected.sort();
        for seed in 0..20 {
            let shuffled = table.permuted(&seeded_permutation(n, seed)).unwrap();
            let out = config.purify(&shuffled).unwrap();
            let mut kept = out.selection.kept.clone();
            kept.sort();
            assert_eq!(kept, expected, "t = {keep_fraction}, shuffle seed {seed}");
            assert_eq!(out.selection.dropped.len(), n - n_keep);
            assert_eq!(out.selection.cut, reference[n_keep - 1].0);
        }
    }
}

/// Ties at the cut used to be broken by input position (numpy's unstable argsort): the kept set
/// then depended on row order. Ties are broken by id.
#[test]
fn ties_at_the_cut_are_broken_by_sample_id_not_position() {
    let rows =
        ["d", "b", "a", "c"].map(|id| (SampleId::new(id), vec![ScoreCell::out_of_subset(1.0)]));
    let table = ScoreTable::new(vec!["m".into()], rows.to_vec()).unwrap();
    let config = PurifyConfig {
        aggregator: BuiltinAggregator::Mean,
        selector: BuiltinSelector::KeepFraction { keep_fraction: 0.5 },
    };
    for seed in 0..6 {
        let out = config.purify(&table.permuted(&seeded_permutation(4, seed)).unwrap()).unwrap();
        assert_eq!(out.selection.kept, [SampleId::new("a"), SampleId::new("b")]);
    }
}
