//! Noisy training sets: add a seeded share of anomalies to a clean training set, drawn from the
//! data set's pool of held-out anomalies when it has one, else moved from the test set (FUIAD).

use crate::error::{Error, Result};
use crate::sample::{Dataset, Sample, seeded_key};
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
    /// Seed of the choice of anomalies added to training (from the pool, or from the test set).
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

/// Builds the noisy training split of a data set whose training set is clean: adds
/// `round(α·n_normal/(1−α))` anomalies to training, where `n_normal` is the number of training
/// images. Added samples keep their hidden label [`Label::Anomalous`] and their mask.
///
/// Where the anomalies come from:
/// - **the pool** ([`Dataset::pool`], when non-empty): the drawn samples move from the pool into
///   training and the test set is left untouched, so every α and seed is evaluated on the same
///   test set, disjoint from every training set. Each pool sample gets a key, the first 8 bytes
///   of SHA-256(`llb-contaminate-pool`, `seed`, id); the samples with the smallest keys are drawn (ties by id). The draw
///   depends only on the ids and the seed, never on positions: the input order does not matter,
///   and a larger α with the same seed draws a superset of a smaller α's anomalies (nested
///   draws, so that α-to-α comparisons are paired);
/// - **the test set** (no pool; the FUIAD protocol of MVTec AD and VisA): the test anomalies,
///   sorted by id, are shuffled by ChaCha8 seeded with `config.seed`, and the first ones move into
///   training and leave the test set. This draw is nested in α too.
///
/// When the source has fewer anomalies than needed, all are taken, a warning is logged and
/// [`ContaminationReport::achieved_ratio`] says what was reached. The same data set and config
/// always give the same split.
///
/// # Errors
/// - [`Error::Config`] when α is not in `[0, 1)`;
/// - [`Error::InvalidSample`] when a training sample is not known to be normal, a pool sample is
///   not known to be anomalous, or the data set was already contaminated.
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
    if let Some(bad) = dataset.pool.iter().find(|s| !s.is_anomalous()) {
        return Err(Error::InvalidSample {
            id: bad.id.clone(),
            reason: "pool sample is not labelled anomalous; the pool holds anomalies only".into(),
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
    let from_pool = !dataset.pool.is_empty();
    let (drawn, available) = if from_pool {
        draw_from_pool(&mut dataset, wanted, config.seed)
    } else {
        move_from_test(&mut dataset, wanted, config.seed)
    };
    let n_moved = drawn.len();
    if n_moved < wanted {
        tracing::warn!(
            category = %dataset.category,
            requested = wanted,
            available,
            source = if from_pool { "pool" } else { "test set" },
            "too few anomalies for the requested contamination ratio; taking all of them"
        );
    }
    dataset.train.extend(drawn);
    dataset.train.sort_by(|a, b| a.id.cmp(&b.id));
    let achieved_ratio = n_moved as f64 / (n_normal + n_moved).max(1) as f64;
    tracing::debug!(n_moved, achieved_ratio, from_pool, "contaminated training set");
    dataset.contamination = Some(ContaminationReport {
        requested_ratio: config.contamination_ratio,
        achieved_ratio,
        n_train_normal: n_normal,
        n_train_anomalous: n_moved,
        seed: Some(config.seed),
    });
    Ok(dataset)
}

/// Takes the `wanted` pool samples with the smallest draw keys out of the pool; returns them and
/// the pool's size before the draw.
fn draw_from_pool(dataset: &mut Dataset, wanted: usize, seed: u64) -> (Vec<Sample>, usize) {
    let mut pool = std::mem::take(&mut dataset.pool);
    let available = pool.len();
    pool.sort_by_cached_key(|s| (seeded_key("llb-contaminate-pool", seed, &s.id), s.id.clone()));
    let mut rest = pool.split_off(wanted.min(available));
    rest.sort_by(|a, b| a.id.cmp(&b.id));
    dataset.pool = rest;
    (pool, available)
}

/// Takes `wanted` test anomalies out of the test set (ChaCha8 shuffle of the id-sorted anomalies);
/// returns them and the number of test anomalies before the draw.
fn move_from_test(dataset: &mut Dataset, wanted: usize, seed: u64) -> (Vec<Sample>, usize) {
    let (mut anomalies, normals): (Vec<Sample>, Vec<Sample>) =
        std::mem::take(&mut dataset.test).into_iter().partition(Sample::is_anomalous);
    let available = anomalies.len();
    anomalies.sort_by(|a, b| a.id.cmp(&b.id));
    anomalies.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let kept = anomalies.split_off(wanted.min(available));
    dataset.test = normals;
    dataset.test.extend(kept);
    dataset.test.sort_by(|a, b| a.id.cmp(&b.id));
    (anomalies, available)
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
            pool: Vec::new(),
            contamination: None,
        }
    }

    /// A clean data set with a pool: `n_train` training normals, 10 test normals and 10 test
    /// anomalies, and `n_pool` pool anomalies of two types.
    fn pooled(n_train: usize, n_pool: usize) -> Dataset {
        let mut d = clean(n_train, 10);
        d.pool = (0..n_pool)
            .map(|i| {
                let kind = if i % 2 == 0 { "crack" } else { "hole" };
                labelled(format!("pool/{kind}/{i:03}.png"), Label::Anomalous)
            })
            .collect();
        d
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

    #[test]
    fn pool_draws_leave_the_test_set_fixed_across_ratios_and_seeds() {
        let clean_test = ids(&pooled(60, 50).test);
        for seed in 0..4 {
            for ratio in [0.0, 0.1, 0.2, 0.4] {
                let config = ContaminationConfig { contamination_ratio: ratio, seed };
                let d = contaminate(pooled(60, 50), &config).unwrap();
                assert_eq!(ids(&d.test), clean_test, "seed {seed} α {ratio}");
                let n = anomalies_needed(60, ratio);
                assert_eq!(
                    (d.train.len(), d.n_train_anomalous(), d.pool.len()),
                    (60 + n, n, 50 - n)
                );
                assert!(ids(&d.train).is_disjoint(&ids(&d.test)));
                assert!(ids(&d.train).is_disjoint(&ids(&d.pool)));
                assert!(d.train.windows(2).all(|w| w[0].id < w[1].id));
                assert!(d.pool.windows(2).all(|w| w[0].id < w[1].id));
                assert!(
                    d.train
                        .iter()
                        .filter(|s| s.is_anomalous())
                        .all(|s| s.id.as_str().starts_with("pool/"))
                );
            }
        }
    }

    #[test]
    fn pool_draws_are_nested_in_the_ratio_and_follow_the_seed() {
        let anomalies = |ratio: f64, seed: u64| {
            let config = ContaminationConfig { contamination_ratio: ratio, seed };
            let d = contaminate(pooled(60, 50), &config).unwrap();
            ids(&d.train.into_iter().filter(Sample::is_anomalous).collect::<Vec<_>>())
        };
        for seed in [0, 7] {
            let (a, b, c) = (anomalies(0.1, seed), anomalies(0.2, seed), anomalies(0.4, seed));
            assert_eq!((a.len(), b.len(), c.len()), (7, 15, 40));
            assert!(a.is_subset(&b) && b.is_subset(&c), "seed {seed}");
        }
        assert_ne!(anomalies(0.2, 0), anomalies(0.2, 1));
        // Both types are drawn: the keys do not follow the id order.
        let drawn = anomalies(0.2, 3);
        assert!(drawn.iter().any(|id| id.as_str().contains("crack")));
        assert!(drawn.iter().any(|id| id.as_str().contains("hole")));
    }

    #[test]
    fn test_set_draws_are_nested_in_the_ratio() {
        let moved = |ratio: f64| {
            let config = ContaminationConfig { contamination_ratio: ratio, seed: 5 };
            let d = contaminate(clean(60, 45), &config).unwrap();
            ids(&d.train.into_iter().filter(Sample::is_anomalous).collect::<Vec<_>>())
        };
        let (a, b, c) = (moved(0.1), moved(0.2), moved(0.4));
        assert!(a.is_subset(&b) && b.is_subset(&c));
        assert_eq!(c.len(), 40);
    }

    #[test]
    fn pool_draw_does_not_depend_on_the_input_order() {
        let config = ContaminationConfig { contamination_ratio: 0.2, seed: 11 };
        let sorted = contaminate(pooled(40, 30), &config).unwrap();
        let mut shuffled = pooled(40, 30);
        shuffled.pool.reverse();
        shuffled.train.reverse();
        shuffled.pool.rotate_left(7);
        assert_eq!(contaminate(shuffled, &config).unwrap(), sorted);
    }

    #[test]
    fn exhausted_pool_takes_everything_and_reports_the_achieved_ratio() {
        let d =
            contaminate(pooled(60, 10), &ContaminationConfig { contamination_ratio: 0.4, seed: 2 })
                .unwrap();
        let report = d.contamination.clone().unwrap();
        assert_eq!((report.n_train_normal, report.n_train_anomalous), (60, 10));
        assert!((report.achieved_ratio - 10.0 / 70.0).abs() < 1e-12);
        assert!(d.pool.is_empty());
        assert_eq!(d.n_test_anomalous(), 10, "the test set keeps its anomalies");
    }

    #[test]
    fn pool_samples_must_be_anomalous() {
        let mut d = pooled(10, 4);
        d.pool[2].label = Some(Label::Normal);
        let bad = d.pool[2].id.clone();
        let err =
            contaminate(d, &ContaminationConfig { contamination_ratio: 0.1, seed: 0 }).unwrap_err();
        assert!(matches!(&err, Error::InvalidSample { id, .. } if *id == bad), "{err}");
    }
}
