//! Golden tests: every built-in rule on a small fixed input, against values computed by hand.
//!
//! Each rule is built from its kebab-case name string through the registry, so this file names
//! every built-in (tidy checks that it does).

use crate::{
    Aggregator, AggregatorRegistry, BuiltinAggregator, BuiltinSelector, FusedScores, ScoreCell,
    ScoreTable, SelectorRegistry,
};
use llb_types::SampleId;

/// The fixed table: 4 samples × 3 models; `in` marks the model each sample was trained on.
///
/// | sample | m0 | m1 | m2 |
/// |---|---|---|---|
/// | a | 1 (in) | 2 | 3 |
/// | b | 4 | 4 (in) | 4 |
/// | c | 0 | 6 | 3 (in) |
/// | d | 2 (in) | 1 | 5 |
fn table() -> ScoreTable {
    let row = |id: &str, scores: [f32; 3], trained_on: usize| {
        let cells = scores
            .iter()
            .enumerate()
            .map(|(j, &s)| ScoreCell { anomaly_score: s, in_subset: j == trained_on });
        (SampleId::new(id), cells.collect())
    };
    let models = vec!["m0".into(), "m1".into(), "m2".into()];
    let rows = vec![
        row("a", [1.0, 2.0, 3.0], 0),
        row("b", [4.0; 3], 1),
        row("c", [0.0, 6.0, 3.0], 2),
        row("d", [2.0, 1.0, 5.0], 0),
    ];
    ScoreTable::new(models, rows).unwrap()
}

/// Fuses the fixed table with the rule named `name` and compares with `expected` (rows a, b, c, d).
fn check(name: &str, expected: [f64; 4]) {
    let rule = AggregatorRegistry::with_builtins().build(name).unwrap();
    assert_eq!(rule.name(), name);
    let fused = rule.fuse(&table()).unwrap();
    assert_eq!(fused.rule(), name);
    for ((id, got), want) in fused.iter().zip(expected) {
        assert!(
            (f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{name}: sample {id}: got {got}, want {want}"
        );
    }
}

#[test]
fn mean() {
    check("mean", [2.0, 4.0, 3.0, 8.0 / 3.0]);
}

#[test]
fn max() {
    check("max", [3.0, 4.0, 6.0, 5.0]);
}

#[test]
fn max_var() {
    // Population variances 2/3, 0, 6, 26/9 times the maxima 3, 4, 6, 5.
    check("max-var", [2.0, 0.0, 36.0, 130.0 / 9.0]);
}

#[test]
fn mean_out() {
    // Out-of-subset scores: a {2, 3}, b {4, 4}, c {0, 6}, d {1, 5}.
    check("mean-out", [2.5, 4.0, 3.0, 3.0]);
}

#[test]
fn mean_out_without_an_out_of_subset_model_is_an_error() {
    let rows = vec![(SampleId::new("only"), vec![ScoreCell::in_subset(1.0)])];
    let table = ScoreTable::new(vec!["m0".into()], rows).unwrap();
    let err = BuiltinAggregator::MeanOut.fuse(&table).unwrap_err().to_string();
    assert_eq!(
        err,
        "rule `mean-out`: sample `only` has no out-of-subset model (every model was trained on it)"
    );
}

#[test]
fn median() {
    check("median", [2.0, 4.0, 3.0, 2.0]);
}

#[test]
fn trimmed_mean() {
    // ⌊0.34·3⌋ = 1 score cut from each end leaves the median; ⌊0.1·3⌋ = 0 leaves the mean.
    check("trimmed-mean(0.34)", [2.0, 4.0, 3.0, 2.0]);
    check("trimmed-mean(0.1)", [2.0, 4.0, 3.0, 8.0 / 3.0]);
    check("trimmed-mean(0)", [2.0, 4.0, 3.0, 8.0 / 3.0]);
}

#[test]
fn rank_mean() {
    // Ranks / 4 per model: m0 (a .5, b 1, c .25, d .75), m1 (.5, .75, 1, .25),
    // m2 with a and c tied at ranks 1 and 2 (.375, .75, .375, 1).
    check("rank-mean", [1.375 / 3.0, 2.5 / 3.0, 1.625 / 3.0, 2.0 / 3.0]);
}

#[test]
fn zscore_mean() {
    // Per model: means 1.75, 3.25, 3.75; population variances 2.1875, 3.6875, 0.6875.
    let z = |x: f64, mean: f64, var: f64| (x - mean) / f64::sqrt(var);
    let row =
        |x: [f64; 3]| (z(x[0], 1.75, 2.1875) + z(x[1], 3.25, 3.6875) + z(x[2], 3.75, 0.6875)) / 3.0;
    check(
        "zscore-mean",
        [row([1.0, 2.0, 3.0]), row([4.0; 3]), row([0.0, 6.0, 3.0]), row([2.0, 1.0, 5.0])],
    );
    // By hand to 7 digits: -0.6875237, 0.7377852, -0.2185573, 0.1682958.
    check("zscore-mean", [-0.6875237, 0.7377852, -0.2185573, 0.1682958]);
}

#[test]
fn zscore_mean_ignores_a_constant_model() {
    let rows = (0..3)
        .map(|i| {
            (
                SampleId::new(format!("s{i}")),
                vec![ScoreCell::out_of_subset(7.0), ScoreCell::out_of_subset(i as f32)],
            )
        })
        .collect();
    let table = ScoreTable::new(vec!["flat".into(), "m".into()], rows).unwrap();
    let fused = BuiltinAggregator::ZscoreMean.fuse(&table).unwrap();
    // Model `m` gives z = -√1.5, 0, √1.5 (std √(2/3)); the flat model contributes 0; mean over 2.
    let half = (1.5f64).sqrt() / 2.0;
    for (got, want) in fused.anomaly_scores().iter().zip([-half, 0.0, half]) {
        assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
    }
}

/// Ten fused scores: s0..s9.
fn fused(scores: &[f32]) -> FusedScores {
    let ids = (0..scores.len()).map(|i| SampleId::new(format!("s{i}"))).collect();
    FusedScores::new("fixture", ids, scores.to_vec()).unwrap()
}

const SCORES: [f32; 10] = [0.1, 0.5, 0.3, 0.3, 0.9, 0.2, 0.3, 5.0, 0.4, 0.2];

/// Selects from `scores` with the rule named `name`; compares the kept ids (as `s<i>` indices,
/// in ascending (score, id) order) and the cut.
fn check_selection(name: &str, scores: &[f32], kept: &[usize], cut: f32) {
    let rule = SelectorRegistry::with_builtins().build(name).unwrap();
    assert_eq!(rule.name(), name);
    let selection = rule.select(&fused(scores)).unwrap();
    let want: Vec<SampleId> = kept.iter().map(|i| SampleId::new(format!("s{i}"))).collect();
    assert_eq!(selection.kept, want, "{name}");
    assert_eq!(selection.cut, cut, "{name}");
    assert_eq!(selection.kept.len() + selection.dropped.len(), scores.len());
}

#[test]
fn keep_fraction() {
    // Ascending: s0 .1, s5 .2, s9 .2, s2 .3, s3 .3, s6 .3, s8 .4, s1 .5, s4 .9, s7 5.
    // ⌊0.5·10⌋ = 5: the .3 tie is split by id, s6 is dropped.
    check_selection("keep-fraction(0.5)", &SCORES, &[0, 5, 9, 2, 3], 0.3);
    // ⌊0.29·10⌋ = 2 (not 3), and ⌊0.29·100⌋ must be 29 despite binary rounding.
    check_selection("keep-fraction(0.29)", &SCORES, &[0, 5], 0.2);
    assert_eq!(BuiltinSelector::keep_count(0.29, 100), 29);
    check_selection("keep-fraction(1)", &SCORES, &[0, 5, 9, 2, 3, 6, 8, 1, 4, 7], 5.0);
    let err = SelectorRegistry::with_builtins()
        .build("keep-fraction(0.05)")
        .unwrap()
        .select(&fused(&SCORES));
    assert_eq!(
        err.unwrap_err().to_string(),
        "rule `keep-fraction(0.05)` keeps no sample out of 10"
    );
}

#[test]
fn mad() {
    // Median .3, absolute deviations' median .1, scale .14826.
    // z = 3: limit .3 + 3·.14826 = .745: drops .9 and 5.
    check_selection("mad(3)", &SCORES, &[0, 5, 9, 2, 3, 6, 8, 1], 0.5);
    // z = 1: limit .448: also drops .5.
    check_selection("mad(1)", &SCORES, &[0, 5, 9, 2, 3, 6, 8], 0.4);
    // MAD = 0 (six 1s of eight): scale 1.2533 · mean |dev| = 1.2533 · 10/8 = 1.567;
    // z = 3: limit 1 + 4.70 = 5.70 drops only the 10.
    check_selection(
        "mad(3)",
        &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 10.0],
        &[0, 1, 2, 3, 4, 5, 6],
        2.0,
    );
    // All equal: nothing to measure, everything kept.
    check_selection("mad(3)", &[2.0; 3], &[0, 1, 2], 2.0);
}

#[test]
fn gmm_split() {
    // Eight scores near .15 and two near 5.1: the high component takes exactly the two.
    let scores = [0.1, 0.2, 0.1, 0.2, 0.15, 0.15, 0.1, 0.2, 5.0, 5.2];
    check_selection("gmm-split", &scores, &[0, 2, 6, 4, 5, 1, 3, 7], 0.2);
    // Degenerate inputs keep everything: all equal, or too few samples.
    check_selection("gmm-split", &[3.0; 5], &[0, 1, 2, 3, 4], 3.0);
    check_selection("gmm-split", &[1.0, 9.0], &[0, 1], 9.0);
}

#[test]
fn every_builtin_has_a_golden_test() {
    let this_file = include_str!("golden.rs");
    for name in BuiltinAggregator::BASE_NAMES.iter().chain(BuiltinSelector::BASE_NAMES) {
        let named = ["check(", "check_selection("].iter().any(|call| {
            this_file.contains(&format!("{call}\"{name}\""))
                || this_file.contains(&format!("{call}\"{name}("))
        });
        assert!(named, "no golden test names `{name}`");
    }
}
