//! The exact evaluators against `tests/fixtures/metrics/golden.json`, to 1e-6; the streaming
//! evaluator against the same values within its own error bound.

use llb_metrics::{
    BinnedConfig, BinnedPixelEvaluator, ExactPixelEvaluator, ImageMetrics, PixelEvaluator,
    PixelMetrics, sample_scores,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/metrics/golden.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn f32s(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn bools(value: &Value) -> Vec<bool> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap() == 1).collect()
}

fn check(case: &Value, key: &str, got: f64) {
    let expected = case["expected"][key].as_f64().unwrap();
    let name = case["name"].as_str().unwrap();
    assert!(
        (got - expected).abs() <= TOLERANCE,
        "{name} {key}: got {got}, scikit-learn/numpy say {expected}"
    );
}

fn check_image(case: &Value, got: ImageMetrics) {
    check(case, "auroc", got.auroc);
    check(case, "ap", got.ap);
    check(case, "f1max", got.f1max);
}

#[test]
fn image_metrics_match_scikit_learn() {
    let fixture = fixture();
    let cases = fixture["image"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let got = ImageMetrics::exact(&f32s(&case["scores"]), &bools(&case["labels"])).unwrap();
        check_image(case, got);
    }
}

#[test]
fn sample_metrics_match_grouped_scikit_learn() {
    let fixture = fixture();
    for case in fixture["sample"].as_array().unwrap() {
        let groups: Vec<String> =
            case["groups"].as_array().unwrap().iter().map(|g| g.as_str().unwrap().into()).collect();
        let samples =
            sample_scores(&groups, &f32s(&case["scores"]), &bools(&case["labels"])).unwrap();
        check_image(case, ImageMetrics::exact(&samples.scores, &samples.labels).unwrap());
    }
}

fn add_images(case: &Value, evaluator: &mut dyn PixelEvaluator) {
    let width = case["width"].as_u64().unwrap() as usize;
    let height = case["height"].as_u64().unwrap() as usize;
    let masks = case["masks"].as_array().unwrap();
    for (map, mask) in case["maps"].as_array().unwrap().iter().zip(masks) {
        let mask: Vec<bool> = mask.as_str().unwrap().bytes().map(|b| b == b'1').collect();
        evaluator.add(&f32s(map), &mask, width, height).unwrap();
    }
}

#[test]
fn pixel_metrics_match_scikit_learn_and_numpy_aupro() {
    let fixture = fixture();
    let cases = fixture["pixel"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let mut evaluator = ExactPixelEvaluator::new();
        add_images(case, &mut evaluator);
        let got = evaluator.finish().unwrap();
        check(case, "auroc", got.auroc);
        check(case, "ap", got.ap);
        check(case, "f1max", got.f1max);
        check(case, "aupro", got.aupro);
    }
}

#[test]
fn binned_pixel_metrics_are_within_their_bound_of_the_golden_values() {
    let fixture = fixture();
    for case in fixture["pixel"].as_array().unwrap() {
        let config = BinnedConfig { n_bins: 200, min_score: -5.0, max_score: 6.0 };
        let mut evaluator = BinnedPixelEvaluator::new(&config).unwrap();
        add_images(case, &mut evaluator);
        let got = evaluator.finish().unwrap();
        let PixelMetrics { auroc, ap, f1max, aupro } = evaluator.max_error().unwrap();
        for (key, value, bound) in [
            ("auroc", got.auroc, auroc),
            ("ap", got.ap, ap),
            ("f1max", got.f1max, f1max),
            ("aupro", got.aupro, aupro),
        ] {
            let expected = case["expected"][key].as_f64().unwrap();
            assert!(
                (value - expected).abs() <= bound + TOLERANCE,
                "{} {key}: binned {value}, golden {expected}, bound {bound}",
                case["name"]
            );
        }
    }
}
