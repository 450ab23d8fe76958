//! FUIAD-style noisy training sets: move a seeded share of the test anomalies into training.

use crate::error::{Error, Result};
use crate::sample::{Dataset, Sample};
use llb_types::{Label, SampleId};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How much of the training set to contaminate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContaminationConfig {
    /// Fraction α of training images that are anomalous after contamination, in `[0, 1)`.
    pub contamination_ratio: f64,
    /// Seed of the choice of anomalies moved from test to training.
    pub seed: u64,
}

/// What a contamination step (or a FUIAD split file) achieved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContaminationReport {
    /// The α asked for.
    pub requested_ratio: f64,
    /// The α achieved: anomalous / all training images. Below `requested_ratio` when the data
    /// set has too few anomalies.
    pub achieved_ratio: f64,
    /// Normal training images.
    pub n_train_normal: usize,
    /// Anomalous training images (hidden label).
    pub n_train_anomalous: usize,
    /// The seed of the draw; `None` when the split came from a file.
    pub seed: Option<u64>,
}

/// Number of anomalies that make a fraction `ratio` of a training set with `n_normal` normal
/// images: `round(α·n_normal/(1−α))`.
pub fn anomalies_needed(n_normal: usize, ratio: f64) -> usize {
    (ratio * n_normal as f64 / (1.0 - ratio)).round() as usize
}

/// Fails unless `ratio` is finite and in `[0, 1)`.
pub(crate) fn check_contamination_ratio(ratio: f64) -> Result<()> {
    if ratio.is_finite() && (0.0..1.0).contains(&ratio) {
        Ok(())
    } else {
        Err(Error::config("contamination_ratio", ratio, "a fraction in [0, 1)"))
    }
}

/// Builds the FUIAD noisy split of a data set whose training set is clean (MVTec AD, VisA, the
/// built-in benchmark): moves `round(α·n_normal/(1−α))` test anomalies, chosen by a ChaCha8 shuffle
/// of the id-sorted test anomalies seeded with `config.seed`, into training and removes them from
/// the test set. Moved samples keep their hidden label [`Label::Anomalous`] and their mask.
///
/// When the test set has fewer anomalies than needed, all are moved, a warning is logged and
/// [`ContaminationReport::achieved_ratio`] says what was reached. The same data set and config
/// always give the same split.
///
/// # Errors
/// - [`Error::Config`] when α is not in `[0, 1)`;
/// - [`Error::InvalidSample`] when a training sample is not known to be normal, or the data set
///   was already contaminated.
pub fn contaminate(mut dataset: Dataset, config: &ContaminationConfig) -> Result<Dataset> {
    let _span = tracing::info_span!("contaminate", category = %dataset.category, ratio = config.contamination_ratio)
        .entered();
    check_contamination_ratio(config.contamination_ratio)?;
    if let Some(bad) = dataset.train.iter().find(|s| s.label != Some(Label::Normal)) {
        return Err(Error::InvalidSample {
            id: bad.id.clone(),
            reason:
                "training sample is not labelled normal; contamination needs a clean training set"
                    .into(),
        });
    }
    if dataset.contamination.is_some() {
        let id = dataset
            .train
            .first()
            .map_or_else(|| SampleId::new(&dataset.category), |s| s.id.clone());
        return Err(Error::InvalidSample { id, reason: "data set is already contaminated".into() });
    }
    let n_normal = dataset.train.len();
    let wanted = anomalies_needed(n_normal, config.contamination_ratio);
    let (mut anomalies, normals): (Vec<Sample>, Vec<Sample>) =
        std::mem::take(&mut dataset.test).into_iter().partition(Sample::is_anomalous);
    anomalies.sort_by(|a, b| a.id.cmp(&b.id));
    anomalies.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed));
    let n_moved = wanted.min(anomalies.len());
    let kept = anomalies.split_off(n_moved);
    if n_moved < wanted {
        tracing::warn!(
            category = %dataset.category,
            requested = wanted,
            available = n_moved,
            "too few test anomalies for the requested contamination ratio; moving all of them"
        );
    }
    dataset.train.extend(anomalies);
    dataset.test = normals;
    dataset.test.extend(kept);
    dataset.train.sort_by(|a, b| a.id.cmp(&b.id));
    dataset.test.sort_by(|a, b| a.id.cmp(&b.id));
    let achieved_ratio = n_moved as f64 / (n_normal + n_moved).max(1) as f64;
    tracing::debug!(n_moved, achieved_ratio, "contaminated training set");
    dataset.contamination = Some(ContaminationReport {
        requested_ratio: config.contamination_ratio,
        achieved_ratio,
        n_train_normal: n_normal,
        n_train_anomalous: n_moved,
        seed: Some(config.seed),
    });
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    fn labelled(id: String, label: Label) -> Sample {
        let mut s = Sample::unlabelled(SampleId::new(id.clone()), PathBuf::from(id));
        s.label = Some(label);
        s
    }

    /// A clean data set with `n_train` normal training images and `n_test_anomalous` test anomalies
    /// (plus 10 test normals).
    fn clean(n_train: usize, n_test_anomalous: usize) -> Dataset {
        Dataset {
            category: "widget".into(),
            root: PathBuf::from("/data"),
            train: (0..n_train)
                .map(|i| labelled(format!("train/good/{i:03}.png"), Label::Normal))
                .collect(),
            test: (0..10)
                .map(|i| labelled(format!("test/good/{i:03}.png"), Label::Normal))
                .chain(
                    (0..n_test_anomalous)
                        .map(|i| labelled(format!("test/crack/{i:03}.png"), Label::Anomalous)),
                )
                .collect(),
            contamination: None,
        }
    }

    fn ids(samples: &[Sample]) -> BTreeSet<SampleId> {
        samples.iter().map(|s| s.id.clone()).collect()
    }

    #[test]
    fn anomalies_needed_follows_the_formula() {
        fn check(n_normal: usize, ratio: f64, expected: usize) {
            assert_eq!(anomalies_needed(n_normal, ratio), expected, "n={n_normal} α={ratio}");
        }
        check(100, 0.0, 0);
        check(100, 0.1, 11);
        check(100, 0.2, 25);
        check(60, 0.4, 40);
        check(7, 0.5, 7);
    }

    #[test]
    fn contaminated_split_has_the_ratio_is_disjoint_and_repeats_with_the_seed() {
        let config = ContaminationConfig { contamination_ratio: 0.2, seed: 9 };
        let before = clean(100, 40);
        let all_ids =
            ids(&before.train).union(&ids(&before.test)).cloned().collect::<BTreeSet<_>>();
        let d = contaminate(before, &config).unwrap();
        assert_eq!(
            (d.train.len(), d.n_train_anomalous(), d.test.len(), d.n_test_anomalous()),
            (125, 25, 25, 15)
        );
        let report = d.contamination.clone().unwrap();
        assert_eq!(
            (report.achieved_ratio, report.requested_ratio, report.seed),
            (0.2, 0.2, Some(9))
        );
        assert!(ids(&d.train).is_disjoint(&ids(&d.test)));
        let after = ids(&d.train).union(&ids(&d.test)).cloned().collect::<BTreeSet<_>>();
        assert_eq!(after, all_ids);
        assert!(d.train.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(contaminate(clean(100, 40), &config).unwrap(), d);
        let other =
            contaminate(clean(100, 40), &ContaminationConfig { seed: 10, ..config }).unwrap();
        assert_ne!(ids(&other.train), ids(&d.train));
    }

    #[test]
    fn too_few_anomalies_reports_the_achieved_ratio() {
        let d =
            contaminate(clean(60, 10), &ContaminationConfig { contamination_ratio: 0.4, seed: 1 })
                .unwrap();
        let report = d.contamination.clone().unwrap();
        assert_eq!((report.n_train_normal, report.n_train_anomalous), (60, 10));
        assert!((report.achieved_ratio - 10.0 / 70.0).abs() < 1e-12);
        assert_eq!(d.n_test_anomalous(), 0);
    }

    #[test]
    fn bad_ratios_and_noisy_training_sets_are_rejected() {
        for ratio in [-0.1, 1.0, f64::NAN] {
            let err = contaminate(
                clean(5, 5),
                &ContaminationConfig { contamination_ratio: ratio, seed: 0 },
            )
            .unwrap_err();
            assert!(matches!(err, Error::Config { field: "contamination_ratio", .. }), "{err}");
        }
        let config = ContaminationConfig { contamination_ratio: 0.1, seed: 0 };
        let twice = contaminate(contaminate(clean(20, 5), &config).unwrap(), &config).unwrap_err();
        assert!(
            matches!(&twice, Error::InvalidSample { id, .. } if id.as_str().starts_with("test/crack")),
            "{twice}"
        );
        let mut unlabelled = clean(3, 3);
        unlabelled.train[1].label = None;
        let err = contaminate(unlabelled, &config).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidSample { id, .. } if id.as_str() == "train/good/001.png"),
            "{err}"
        );
    }
}
