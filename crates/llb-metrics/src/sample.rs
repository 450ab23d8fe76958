//! Sample-level scores: several views of one physical sample (Real-IAD: 5 cameras) fused into
//! one score before the image metrics.

use crate::error::{Error, Result, check_finite};
use std::collections::BTreeMap;

/// One score and one label per group, in ascending group order.
///
/// Produced by [`sample_scores`]; feed `scores` and `labels` to
/// [`ImageMetrics::exact`](crate::ImageMetrics::exact) for S-AUROC, S-AP and S-F1max.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleScores<K> {
    /// The distinct group keys, sorted ascending.
    pub groups: Vec<K>,
    /// `scores[g]`: the largest view score of group `groups[g]`.
    pub scores: Vec<f32>,
    /// `labels[g]`: `true` when any view of group `groups[g]` is anomalous.
    pub labels: Vec<bool>,
}

/// Groups per-view scores by physical sample: sample score = max over its views (Real-IAD's
/// sample-level protocol), sample label = anomalous if any view is.
///
/// `groups[i]`, `scores[i]` and `labels[i]` describe view `i`. Keys may be
/// llb-types' `GroupId` or any ordered type. The output is sorted by key, so it does not depend
/// on the order of the views.
///
/// # Errors
/// [`Error::Empty`] for no views, [`Error::LengthMismatch`] when the three slices differ in
/// length, and [`Error::NonFinite`] for a NaN or infinite score.
pub fn sample_scores<K: Ord + Clone>(
    groups: &[K],
    scores: &[f32],
    labels: &[bool],
) -> Result<SampleScores<K>> {
    if scores.is_empty() {
        return Err(Error::Empty { what: "view scores".into() });
    }
    for (what, got) in [("view groups", groups.len()), ("view labels", labels.len())] {
        if got != scores.len() {
            return Err(Error::LengthMismatch { what: what.into(), expected: scores.len(), got });
        }
    }
    check_finite(|| "view scores".into(), scores)?;
    let mut by_group: BTreeMap<&K, (f32, bool)> = BTreeMap::new();
    for ((group, &score), &anomalous) in groups.iter().zip(scores).zip(labels) {
        let entry = by_group.entry(group).or_insert((score, anomalous));
        entry.0 = entry.0.max(score);
        entry.1 |= anomalous;
    }
    let mut out = SampleScores {
        groups: Vec::with_capacity(by_group.len()),
        scores: Vec::with_capacity(by_group.len()),
        labels: Vec::with_capacity(by_group.len()),
    };
    for (group, (score, anomalous)) in by_group {
        out.groups.push(group.clone());
        out.scores.push(score);
        out.labels.push(anomalous);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_over_views_and_any_label() {
        let groups: Vec<String> =
            ["s2", "s1", "s2", "s1", "s3"].into_iter().map(String::from).collect();
        let got =
            sample_scores(&groups, &[0.1, 0.7, 0.9, 0.2, 0.4], &[false, false, true, false, false])
                .unwrap();
        let names: Vec<&str> = got.groups.iter().map(String::as_str).collect();
        assert_eq!(names, ["s1", "s2", "s3"]);
        assert_eq!(got.scores, [0.7, 0.9, 0.4]);
        assert_eq!(got.labels, [false, true, false]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(sample_scores::<u32>(&[], &[], &[]), Err(Error::Empty { .. })));
        assert!(matches!(
            sample_scores(&[1, 2], &[0.1, 0.2], &[true]),
            Err(Error::LengthMismatch { got: 1, .. })
        ));
        assert!(matches!(
            sample_scores(&[1], &[0.1, 0.2], &[true, false]),
            Err(Error::LengthMismatch { got: 1, .. })
        ));
        assert!(matches!(
            sample_scores(&[1, 1], &[0.1, f32::NAN], &[true, false]),
            Err(Error::NonFinite { index: 1, .. })
        ));
    }
}
