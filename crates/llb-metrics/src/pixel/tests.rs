//! Pixel evaluators against a brute-force reference, binned against exact within the stated
//! bound, and the degenerate inputs.

use super::*;
use crate::error::Error;
use crate::regions::Regions;

/// A seeded SplitMix64 stream, enough for test data without an RNG dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

struct Image {
    map: Vec<f32>,
    mask: Vec<bool>,
    width: usize,
    height: usize,
}

/// Random images with blob-like masks; anomalous pixels score higher on average.
fn images(seed: u64, n: usize, width: usize, height: usize, decimals: Option<i32>) -> Vec<Image> {
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|i| {
            let mut mask = vec![false; width * height];
            if i % 3 != 0 {
                for _ in 0..3 {
                    let (cx, cy) = (
                        (rng.next_f32() * width as f32) as usize,
                        (rng.next_f32() * height as f32) as usize,
                    );
                    let r = 1 + (rng.next_f32() * 3.0) as usize;
                    for y in cy.saturating_sub(r)..(cy + r).min(height) {
                        for x in cx.saturating_sub(r)..(cx + r).min(width) {
                            mask[y * width + x] = rng.next_f32() < 0.8;
                        }
                    }
                }
            }
            let map = mask
                .iter()
                .map(|&m| {
                    let s = rng.next_f32() + if m { 0.4 } else { 0.0 };
                    match decimals {
                        Some(d) => (s * 10f32.powi(d)).round() / 10f32.powi(d),
                        None => s,
                    }
                })
                .collect();
            Image { map, mask, width, height }
        })
        .collect()
}

fn run(evaluator: &mut dyn PixelEvaluator, images: &[Image]) -> PixelMetrics {
    for im in images {
        evaluator.add(&im.map, &im.mask, im.width, im.height).unwrap();
    }
    evaluator.finish().unwrap()
}

/// Brute force from the definitions: every distinct score is a threshold, pairs for AUROC.
fn brute_force(images: &[Image]) -> PixelMetrics {
    let (mut pos, mut neg, mut regions) = (Vec::new(), Vec::new(), Vec::new());
    let mut labelling = Regions::default();
    for im in images {
        labelling.label(&im.mask, im.width, im.height);
        let first = regions.len();
        regions.extend(labelling.sizes.iter().map(|_| Vec::new()));
        for (p, &s) in im.map.iter().enumerate() {
            match labelling.labels[p] {
                0 => neg.push(s),
                l => {
                    pos.push(s);
                    regions[first + l as usize - 1].push(s);
                }
            }
        }
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    let mut pairs = 0.0;
    for &p in &pos {
        for &n in &neg {
            pairs += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    let mut thresholds: Vec<f32> = pos.iter().chain(&neg).copied().collect();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let (mut ap, mut f1max, mut aupro) = (0.0, 0.0f64, 0.0);
    let (mut prev_recall, mut prev_fpr, mut prev_pro) = (0.0, 0.0, 0.0);
    for t in thresholds {
        let tp = pos.iter().filter(|&&s| s >= t).count() as f64;
        let fp = neg.iter().filter(|&&s| s >= t).count() as f64;
        let (precision, recall) = (tp / (tp + fp), tp / np);
        ap += (recall - prev_recall) * precision;
        if tp > 0.0 {
            f1max = f1max.max(2.0 * precision * recall / (precision + recall));
        }
        let fpr = fp / nn;
        let pro = regions
            .iter()
            .map(|r| r.iter().filter(|&&s| s >= t).count() as f64 / r.len() as f64)
            .sum::<f64>()
            / regions.len() as f64;
        if prev_fpr < AUPRO_FPR_LIMIT {
            if fpr <= AUPRO_FPR_LIMIT {
                aupro += (fpr - prev_fpr) * (pro + prev_pro) / 2.0;
            } else {
                let at =
                    prev_pro + (pro - prev_pro) * (AUPRO_FPR_LIMIT - prev_fpr) / (fpr - prev_fpr);
                aupro += (AUPRO_FPR_LIMIT - prev_fpr) * (at + prev_pro) / 2.0;
            }
        }
        (prev_recall, prev_fpr, prev_pro) = (recall, fpr, pro);
    }
    PixelMetrics { auroc: pairs / (np * nn), ap, f1max, aupro: aupro / AUPRO_FPR_LIMIT }
}

fn assert_close(got: PixelMetrics, expected: PixelMetrics, tolerance: f64) {
    let pairs = [
        (got.auroc, expected.auroc),
        (got.ap, expected.ap),
        (got.f1max, expected.f1max),
        (got.aupro, expected.aupro),
    ];
    for (g, e) in pairs {
        assert!((g - e).abs() <= tolerance, "got {got:?}\nexpected {expected:?}");
    }
}

#[test]
fn exact_matches_brute_force_with_and_without_ties() {
    for (seed, decimals) in [(1, None), (2, Some(1)), (3, Some(2))] {
        let data = images(seed, 6, 13, 9, decimals);
        assert_close(run(&mut ExactPixelEvaluator::new(), &data), brute_force(&data), 1e-12);
    }
}

#[test]
fn exact_does_not_depend_on_image_order() {
    let mut data = images(4, 5, 8, 8, Some(1));
    let first = run(&mut ExactPixelEvaluator::new(), &data);
    data.reverse();
    assert_close(run(&mut ExactPixelEvaluator::new(), &data), first, 1e-12);
}

#[test]
fn binned_is_exact_when_each_bin_holds_one_score_value() {
    // Scores in steps of 0.1 from 0 to 1.4, bins of width 0.1 centred on them.
    let data = images(5, 6, 12, 10, Some(1));
    let config = BinnedConfig { n_bins: 15, min_score: -0.05, max_score: 1.45 };
    let mut binned = BinnedPixelEvaluator::new(&config).unwrap();
    let got = run(&mut binned, &data);
    assert_close(got, run(&mut ExactPixelEvaluator::new(), &data), 1e-9);
}

#[test]
fn binned_stays_within_its_error_bound() {
    let data = images(6, 8, 16, 16, None);
    let exact = run(&mut ExactPixelEvaluator::new(), &data);
    let mut previous: Option<PixelMetrics> = None;
    for n_bins in [4, 16, 64, 256, 1024] {
        let config = BinnedConfig { n_bins, min_score: 0.0, max_score: 1.4 };
        let mut binned = BinnedPixelEvaluator::new(&config).unwrap();
        let got = run(&mut binned, &data);
        let bound = binned.max_error().unwrap();
        let checks = [
            ("auroc", got.auroc, exact.auroc, bound.auroc),
            ("ap", got.ap, exact.ap, bound.ap),
            ("f1max", got.f1max, exact.f1max, bound.f1max),
            ("aupro", got.aupro, exact.aupro, bound.aupro),
        ];
        for (name, g, e, b) in checks {
            assert!((g - e).abs() <= b + 1e-12, "{name} at {n_bins} bins: |{g} - {e}| > {b}");
        }
        assert!(got.f1max <= exact.f1max + 1e-12, "binned F1max is never above the exact one");
        if let Some(p) = previous {
            // Nested bins: the boxes of a finer histogram lie inside the coarser ones.
            assert!(bound.auroc <= p.auroc + 1e-12 && bound.aupro <= p.aupro + 1e-12);
        }
        previous = Some(bound);
    }
    let fine = previous.unwrap();
    assert!(fine.auroc < 1e-3 && fine.aupro < 1e-2, "1024 bins should be tight: {fine:?}");
}

#[test]
fn scores_outside_the_range_go_to_the_end_bins() {
    let config = BinnedConfig { n_bins: 4, min_score: 0.0, max_score: 1.0 };
    let mut binned = BinnedPixelEvaluator::new(&config).unwrap();
    binned.add(&[-5.0, 0.5, 7.0, 1.0], &[false, false, true, true], 2, 2).unwrap();
    let got = binned.finish().unwrap();
    assert_eq!(got.auroc, 1.0);
}

#[test]
fn degenerate_inputs_are_errors() {
    let mut exact = ExactPixelEvaluator::new();
    assert!(matches!(exact.finish(), Err(Error::Empty { .. })));
    let err = exact.add(&[0.1; 3], &[false; 4], 2, 2).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "anomaly map", got: 3, .. }), "{err}");
    let err = exact.add(&[0.1; 4], &[false; 5], 2, 2).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "mask", got: 5, .. }), "{err}");
    assert!(matches!(exact.add(&[], &[], 0, 3), Err(Error::Empty { .. })));
    let err = exact.add(&[0.1, f32::NAN, 0.2, 0.3], &[false; 4], 2, 2).unwrap_err();
    assert!(matches!(err, Error::NonFinite { index: 1, .. }), "{err}");
    let err = exact.add(&[0.1, 0.2, -f32::NAN, 0.3], &[false; 4], 2, 2).unwrap_err();
    assert!(matches!(err, Error::NonFinite { index: 2, .. }), "negative NaN: {err}");
    exact.add(&[0.1, 0.2, 0.3, 0.4], &[false; 4], 2, 2).unwrap();
    assert!(matches!(exact.finish(), Err(Error::NoPositives { n_items: 4, .. })));

    let config = BinnedConfig { n_bins: 8, min_score: 0.0, max_score: 1.0 };
    let mut binned = BinnedPixelEvaluator::new(&config).unwrap();
    binned.add(&[0.1, 0.2, 0.3, 0.4], &[true; 4], 2, 2).unwrap();
    assert!(matches!(binned.finish(), Err(Error::NoNegatives { n_items: 4, .. })));
    assert!(matches!(binned.max_error(), Err(Error::NoNegatives { .. })));
    let err = binned.add(&[f32::NEG_INFINITY; 4], &[true; 4], 2, 2).unwrap_err();
    assert!(matches!(err, Error::NonFinite { index: 0, .. }), "{err}");

    for (n_bins, min_score, max_score) in
        [(0, 0.0, 1.0), (8, 1.0, 1.0), (8, 0.0, f64::NAN), (8, -f64::MAX, f64::MAX)]
    {
        let config = BinnedConfig { n_bins, min_score, max_score };
        assert!(matches!(BinnedPixelEvaluator::new(&config), Err(Error::InvalidBins { .. })));
    }
}

#[test]
fn config_rejects_unknown_fields() {
    let ok: BinnedConfig =
        serde_json::from_str(r#"{"n_bins": 10, "min_score": 0.0, "max_score": 1.0}"#).unwrap();
    assert_eq!(ok.n_bins, 10);
    let bad = serde_json::from_str::<BinnedConfig>(
        r#"{"n_bins": 10, "min_score": 0.0, "max_score": 1.0, "bins": 3}"#,
    );
    assert!(bad.is_err());
}

#[test]
fn autotraits() {
    fn check<T: Send + Sync + 'static>() {}
    check::<ExactPixelEvaluator>();
    check::<BinnedPixelEvaluator>();
    check::<PixelMetrics>();
    check::<crate::ImageMetrics>();
    check::<crate::SampleScores<String>>();
    check::<Error>();
    fn object_safe(_: &dyn PixelEvaluator) {}
    object_safe(&ExactPixelEvaluator::new());
}
