//! End-to-end: the adaptive selection rules on synthetic contaminated score sets, judged by the
//! purity report.

use crate::testing::seeded_permutation;
use crate::{BuiltinSelector, FusedScores, PurityReport, Selector};
use llb_types::{Label, SampleId};
use std::collections::BTreeMap;

/// `n_normal` scores spread evenly over [0.1, 0.3] and `n_anomalous` over [0.6, 0.9], in a
/// shuffled order, with their labels.
fn contaminated(n_normal: usize, n_anomalous: usize) -> (FusedScores, BTreeMap<SampleId, Label>) {
    let n = n_normal + n_anomalous;
    let order = seeded_permutation(n, 7);
    let mut ids = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut labels = BTreeMap::new();
    for &i in &order {
        let (score, label) = if i < n_normal {
            (0.1 + 0.2 * i as f32 / n_normal as f32, Label::Normal)
        } else {
            (0.6 + 0.3 * (i - n_normal) as f32 / n_anomalous as f32, Label::Anomalous)
        };
        let id = SampleId::new(format!("s{i:04}"));
        labels.insert(id.clone(), label);
        ids.push(id);
        scores.push(score);
    }
    (FusedScores::new("synthetic", ids, scores).unwrap(), labels)
}

/// Selects with `rule` and returns (removal precision, removal recall, anomaly fraction after).
fn check(
    rule: BuiltinSelector,
    n_normal: usize,
    n_anomalous: usize,
) -> (Option<f64>, Option<f64>, f64) {
    let (fused, labels) = contaminated(n_normal, n_anomalous);
    let report = PurityReport::new(&rule.select(&fused).unwrap(), &labels).unwrap();
    (report.removal_precision, report.removal_recall, report.anomaly_fraction_after)
}

#[test]
fn adaptive_rules_remove_exactly_the_separated_anomalies() {
    for (n_normal, n_anomalous) in [(180, 20), (90, 10), (400, 100)] {
        for rule in [BuiltinSelector::GmmSplit, BuiltinSelector::Mad { max_robust_z: 3.5 }] {
            let got = check(rule, n_normal, n_anomalous);
            assert_eq!(got, (Some(1.0), Some(1.0), 0.0), "{rule} on {n_normal} + {n_anomalous}");
        }
    }
}

#[test]
fn keep_fraction_removes_all_separated_anomalies_only_when_t_is_at_most_one_minus_alpha() {
    // α = 0.1: t = 0.9 keeps exactly the normals; t = 0.95 must keep 10 anomalies.
    assert_eq!(
        check(BuiltinSelector::KeepFraction { keep_fraction: 0.9 }, 180, 20),
        (Some(1.0), Some(1.0), 0.0)
    );
    let (precision, recall, after) =
        check(BuiltinSelector::KeepFraction { keep_fraction: 0.95 }, 180, 20);
    assert_eq!((precision, recall), (Some(1.0), Some(0.5)));
    assert!((after - 10.0 / 190.0).abs() < 1e-12);
}

#[test]
fn adaptive_rules_keep_everything_on_clean_uniform_scores() {
    // No contamination: gmm-split may split a flat distribution, but mad(3.5) must keep all.
    let (precision, recall, after) = check(BuiltinSelector::Mad { max_robust_z: 3.5 }, 200, 0);
    assert_eq!((precision, recall, after), (None, None, 0.0));
}
