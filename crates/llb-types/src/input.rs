//! How an encoder wants its input images prepared, shared by the data crate (which prepares
//! them) and the feature and detector crates (which record it in caches and saved models).

use serde::{Deserialize, Serialize};

/// How an encoder wants its input images prepared (the caller resizes and normalises).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Per-channel mean subtracted from RGB values in `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation the centred values are divided by.
    pub std: [f32; 3],
    /// Input height and width must be multiples of this (the ViT patch size, or the CNN's total
    /// stride).
    pub size_multiple_px: usize,
}

impl InputSpec {
    /// ImageNet per-channel means (RGB, values in `[0, 1]`); torchvision, timm and DINOv2 all use
    /// them.
    pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    /// ImageNet per-channel standard deviations (RGB, values in `[0, 1]`).
    pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saved models and cache entries store this JSON: a renamed field would orphan them.
    #[test]
    fn json_round_trip_and_unknown_fields() {
        let spec = InputSpec {
            mean: InputSpec::IMAGENET_MEAN,
            std: InputSpec::IMAGENET_STD,
            size_multiple_px: 14,
        };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["size_multiple_px"], 14);
        assert_eq!(serde_json::from_value::<InputSpec>(json).unwrap(), spec);
        let extra =
            serde_json::json!({"mean": [0, 0, 0], "std": [1, 1, 1], "size_multiple_px": 1, "x": 0});
        assert!(serde_json::from_value::<InputSpec>(extra).is_err());
    }
}
