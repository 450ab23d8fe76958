//! The detector interface every backbone implements: fit on features, score into anomaly maps.

use crate::Result;
use candle_core::Tensor;
use llb_types::SampleId;

/// Rule that turns an anomaly map into one image score (higher = more anomalous).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ImageScoreRule {
    /// The maximum of the map (PatchCore; the paper's test score).
    Max,
    /// The mean of the top `fraction` of map values (Dinomaly; the paper's screening score uses
    /// `0.01`). At least one value is always used.
    TopMean {
        /// Fraction of map values averaged, in `(0, 1]`.
        fraction: f32,
    },
}

/// A fitted detector.
///
/// Input features are what the detector's encoder produced for a batch of images: one tensor per
/// encoder layer, each `[N, C, h, w]` f32, in the same image order for every layer.
/// Implementations are deterministic: the same model and features give bit-identical maps.
pub trait Detector: Send + Sync {
    /// A short name with the parameters that matter, e.g. `patchcore(coreset=0.1)`.
    fn name(&self) -> String;

    /// Anomaly maps `[N, H, W]` f32 at `image_size_px = (H, W)`, upsampled and blurred as the
    /// detector's paper prescribes; higher means more anomalous.
    ///
    /// # Errors
    /// Features whose number of layers, channels or grid differ from those the model was fitted
    /// on.
    fn anomaly_maps(&self, layers: &[Tensor], image_size_px: (usize, usize)) -> Result<Tensor>;

    /// Anomaly maps plus one image score per image by `rule` (higher = more anomalous).
    ///
    /// The provided method applies `rule` to each map of [`Detector::anomaly_maps`]; detectors
    /// whose paper defines another image score (PatchCore's re-weighting) override it.
    ///
    /// # Errors
    /// Those of [`Detector::anomaly_maps`], and
    /// [`Error::NonFiniteMap`](crate::Error::NonFiniteMap) when a map holds NaN or ±∞.
    fn score(
        &self,
        layers: &[Tensor],
        image_size_px: (usize, usize),
        rule: ImageScoreRule,
    ) -> Result<Scores> {
        let maps = self.anomaly_maps(layers, image_size_px)?;
        let image_scores = image_scores(&maps, rule)?;
        Ok(Scores { maps, image_scores })
    }
}

/// What a detector returns for a batch of images.
#[derive(Clone, Debug)]
pub struct Scores {
    /// Anomaly maps `[N, H, W]` f32, higher = more anomalous.
    pub maps: Tensor,
    /// One image anomaly score per image, in input order.
    pub image_scores: Vec<f32>,
}

/// Applies `rule` to every map of `maps` `[N, ...]`.
///
/// # Errors
/// [`Error::Empty`](crate::Error::Empty) for maps without values,
/// [`Error::NonFiniteMap`](crate::Error::NonFiniteMap) for a map holding NaN or ±∞ (either NaN
/// sign), with the map's index in the batch, the first bad value and where it is.
pub fn image_scores(maps: &Tensor, rule: ImageScoreRule) -> Result<Vec<f32>> {
    let n = maps.dim(0)?;
    let flat = maps.to_dtype(candle_core::DType::F32)?.reshape((n, ()))?.to_vec2::<f32>()?;
    flat.iter()
        .enumerate()
        .map(|(i, map)| {
            if let Some(at) = map.iter().position(|v| !v.is_finite()) {
                return Err(crate::Error::NonFiniteMap { index: i, value: map[at], pixel: at });
            }
            match rule.image_score(map) {
                None => Err(crate::Error::Empty { what: format!("anomaly map {i} has no values") }),
                Some(s) if !s.is_finite() => {
                    Err(crate::Error::NonFinite { what: format!("image score {i} ({s})") })
                }
                Some(s) => Ok(s),
            }
        })
        .collect()
}

/// A detector configuration that can be fitted on training features.
pub trait Fit {
    /// The fitted model.
    type Model: Detector;

    /// Fits a fresh model on the features of the training images (same layout as
    /// [`Detector::anomaly_maps`]), row `i` of every layer belonging to sample `ids[i]`.
    ///
    /// The model is a function of the *set* of `(id, features)` pairs and of the configuration:
    /// implementations put the rows in ascending id order first and key every random choice
    /// (coreset start, bank sampling, epoch order) to ids and the configuration's seed, so any
    /// permutation of the input rows gives a bit-identical model.
    ///
    /// # Errors
    /// Empty or inconsistent features, a repeated id
    /// ([`Error::DuplicateId`](crate::Error::DuplicateId)), or a failure of the tensor backend.
    fn fit(&self, ids: &[SampleId], layers: &[Tensor]) -> Result<Self::Model>;
}

impl ImageScoreRule {
    /// The image score of one anomaly map (any layout, flattened), or `None` for an empty map.
    ///
    /// `TopMean` averages the `max(1, ⌈fraction·n⌉)` largest values. A map holding any NaN (of
    /// either sign) or infinity scores NaN, so that the caller's finiteness check catches it:
    /// ordering by `f32::total_cmp` alone would put a negative NaN (what x86 gives for 0/0)
    /// below −∞ and return a finite score for a broken map.
    pub fn image_score(&self, map: &[f32]) -> Option<f32> {
        if map.is_empty() {
            return None;
        }
        if map.iter().any(|v| !v.is_finite()) {
            return Some(f32::NAN);
        }
        match *self {
            ImageScoreRule::Max => map.iter().copied().max_by(f32::total_cmp),
            ImageScoreRule::TopMean { fraction } => {
                let n = map.len();
                let k = ((fraction.clamp(0.0, 1.0) as f64 * n as f64).ceil() as usize).clamp(1, n);
                let mut values = map.to_vec();
                values.select_nth_unstable_by(n - k, |a, b| a.total_cmp(b));
                let top = &values[n - k..];
                Some((top.iter().map(|&v| v as f64).sum::<f64>() / k as f64) as f32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ImageScoreRule;

    fn check(rule: ImageScoreRule, map: &[f32], expected: Option<f32>) {
        assert_eq!(rule.image_score(map), expected, "{rule:?} on {map:?}");
    }

    #[test]
    fn image_score_rules() {
        let map = [0.5, 3.0, 1.0, 2.0];
        check(ImageScoreRule::Max, &map, Some(3.0));
        check(ImageScoreRule::TopMean { fraction: 0.5 }, &map, Some(2.5));
        check(ImageScoreRule::TopMean { fraction: 0.01 }, &map, Some(3.0));
        check(ImageScoreRule::TopMean { fraction: 1.0 }, &map, Some(1.625));
        check(ImageScoreRule::Max, &[], None);
        check(ImageScoreRule::TopMean { fraction: 0.1 }, &[], None);
    }

    /// Regression: `-NaN` (x86's 0/0) sorts below −∞ under `total_cmp`, so `Max` and a small
    /// `TopMean` used to return a finite score for a map holding it.
    #[test]
    fn any_nan_or_infinity_in_a_map_scores_nan() {
        let negative_nan = -f32::NAN;
        assert!(negative_nan.is_sign_negative() && negative_nan.is_nan());
        let rules = [
            ImageScoreRule::Max,
            ImageScoreRule::TopMean { fraction: 0.01 },
            ImageScoreRule::TopMean { fraction: 1.0 },
        ];
        for bad in [f32::NAN, negative_nan, f32::INFINITY, f32::NEG_INFINITY] {
            for rule in rules {
                let score = rule.image_score(&[0.5, bad, 3.0, 1.0]).unwrap();
                assert!(score.is_nan(), "{rule:?} with {bad}: {score}");
            }
        }
    }

    #[test]
    fn image_scores_names_the_map_and_pixel_of_a_non_finite_value() {
        let maps = candle_core::Tensor::from_vec(
            vec![0.1f32, 0.2, 0.3, 0.4, 0.5, -f32::NAN, 0.7, 0.8],
            (2, 2, 2),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let err = super::image_scores(&maps, ImageScoreRule::Max).unwrap_err().to_string();
        assert!(err.contains("anomaly map 1 of the batch") && err.contains("pixel 1"), "{err}");
        let ok = maps.narrow(0, 0, 1).unwrap();
        assert_eq!(super::image_scores(&ok, ImageScoreRule::Max).unwrap(), [0.4]);
    }
}
