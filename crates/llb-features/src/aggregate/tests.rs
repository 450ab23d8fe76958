//! Patch aggregation tests: shapes, constant maps, and small cases computed by hand.

use candle_core::{Device, Tensor};

use super::patchcore::adaptive_pool_matrix;
use super::{LocalPooling, PatchAggregator, PatchAggregatorConfig};
use crate::Error;

fn map(values: &[f32], shape: (usize, usize, usize, usize)) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
}

fn constant(v: f32, shape: (usize, usize, usize, usize)) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    map(&vec![v; n], shape)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Runs `config` on `maps` and compares with `expected` (shape and values, 1e-6).
fn check(config: PatchAggregatorConfig, maps: &[Tensor], shape: &[usize], expected: &[f32]) {
    let out = PatchAggregator::new(&config).unwrap().forward(maps).unwrap();
    assert_eq!(out.dims(), shape);
    let got = values(&out);
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() < 1e-6, "element {i}: got {g}, expected {e} (all: {got:?})");
    }
}

#[test]
fn output_shapes_follow_the_first_grid_and_the_target_dim() {
    let maps = [constant(1.0, (2, 8, 6, 10)), constant(1.0, (2, 16, 3, 5))];
    for (config, dim) in [
        (PatchAggregatorConfig::patchcore_original(), 1024),
        (PatchAggregatorConfig::anomalib(), 24),
        (PatchAggregatorConfig::average_pooled(32), 32),
        (
            PatchAggregatorConfig {
                local_pooling: LocalPooling::Unfold3x3,
                pre_dim: None,
                target_dim: None,
            },
            9 * 24,
        ),
        (
            PatchAggregatorConfig {
                local_pooling: LocalPooling::Average3x3,
                pre_dim: Some(5),
                target_dim: None,
            },
            10,
        ),
    ] {
        let agg = PatchAggregator::new(&config).unwrap();
        assert_eq!(agg.output_dim(&[8, 16]), dim, "{config:?}");
        assert_eq!(agg.forward(&maps).unwrap().dims(), &[2, dim, 6, 10], "{config:?}");
    }
}

#[test]
fn a_constant_map_stays_constant_inside_and_pads_with_zeros_at_the_border() {
    // AvgPool2d(3, 1, 1) counts the zero padding: corners see 4 of 9 values, edges 6 of 9.
    let c = 3.0f32;
    let out = PatchAggregator::new(&PatchAggregatorConfig::average_pooled(2))
        .unwrap()
        .forward(&[constant(c, (1, 5, 7, 7))])
        .unwrap();
    let v = values(&out);
    for ch in 0..2 {
        for y in 0..7 {
            for x in 0..7 {
                let inside = [y, x].iter().filter(|&&i| i == 0 || i == 6).count();
                let want = c * [9.0, 6.0, 4.0][inside] / 9.0;
                let got = v[ch * 49 + y * 7 + x];
                assert!((got - want).abs() < 1e-6, "({ch}, {y}, {x}): {got} vs {want}");
            }
        }
    }
    // Two constant layers, original PatchCore: the centre, far from every border, is constant.
    let out = PatchAggregator::new(&PatchAggregatorConfig::patchcore_original())
        .unwrap()
        .forward(&[constant(c, (1, 4, 8, 8)), constant(c, (1, 6, 4, 4))])
        .unwrap();
    for y in 3..5 {
        for x in 3..5 {
            let column = out.narrow(2, y, 1).unwrap().narrow(3, x, 1).unwrap();
            // Each output bin averages unfolded values that are all `c` here.
            assert!(values(&column).iter().all(|&g| (g - c).abs() < 1e-5), "({y}, {x})");
        }
    }
}

#[test]
fn adaptive_pooling_bins_overlap_like_torch() {
    // adaptive_avg_pool1d(5 -> 3): bins [0, 2), [1, 4), [3, 5).
    let m = adaptive_pool_matrix(5, 3);
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    let y: Vec<f64> = (0..3).map(|k| (0..5).map(|j| x[j] * m[j * 3 + k]).sum()).collect();
    assert_eq!(y, vec![1.5, 3.0, 4.5]);
}

#[test]
fn hand_computed_unfold_pool_and_aggregate() {
    // Layer 0 is [9, 18] at one position: unfolded, only the centre tap (index 4 of 9) is
    // non-zero: 18 values pooled to 3 bins of 6 give [9/6, 0, 18/6]. Layer 1 is [27]: 9 values
    // pooled to 3 bins of 3 give [0, 9, 0]. The concatenation [1.5, 0, 3, 0, 9, 0] pooled to 2
    // bins of 3 gives [1.5, 3].
    let config = PatchAggregatorConfig {
        local_pooling: LocalPooling::Unfold3x3,
        pre_dim: Some(3),
        target_dim: Some(2),
    };
    check(
        config,
        &[map(&[9.0, 18.0], (1, 2, 1, 1)), map(&[27.0], (1, 1, 1, 1))],
        &[1, 2, 1, 1],
        &[1.5, 3.0],
    );
}

#[test]
fn hand_computed_average_and_bilinear_upsampling() {
    // Average: every 3×3 window of a 2×2 map covers it whole, so each position is 10 / 9.
    // Layer 1 ([[9]]) averages to 1 and upsamples to 1 everywhere.
    check(
        PatchAggregatorConfig::anomalib(),
        &[map(&[1.0, 2.0, 3.0, 4.0], (1, 1, 2, 2)), map(&[9.0], (1, 1, 1, 1))],
        &[1, 2, 2, 2],
        &[10.0 / 9.0, 10.0 / 9.0, 10.0 / 9.0, 10.0 / 9.0, 1.0, 1.0, 1.0, 1.0],
    );
    // Unfold's centre tap is the raw map, so channel 4 of layer 1 shows the bilinear resampling
    // of [[1, 2], [3, 4]] to 4×4 with align_corners=False (source = (dst + 0.5) / 2 - 0.5,
    // clamped at the edges), which torch gives as below.
    let config = PatchAggregatorConfig {
        local_pooling: LocalPooling::Unfold3x3,
        pre_dim: None,
        target_dim: None,
    };
    let out = PatchAggregator::new(&config)
        .unwrap()
        .forward(&[constant(0.0, (1, 1, 4, 4)), map(&[1.0, 2.0, 3.0, 4.0], (1, 1, 2, 2))])
        .unwrap();
    let centre = values(&out.narrow(1, 9 + 4, 1).unwrap());
    let want =
        [1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0];
    for (g, w) in centre.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{centre:?}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let agg = PatchAggregator::new(&PatchAggregatorConfig::anomalib()).unwrap();
    assert!(matches!(agg.forward(&[]), Err(Error::InputShape { .. })));
    assert!(matches!(
        agg.forward(&[constant(1.0, (2, 3, 4, 4)), constant(1.0, (1, 3, 2, 2))]),
        Err(Error::InputShape { .. })
    ));
    let flat = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(agg.forward(&[flat]), Err(Error::InputShape { .. })));
    let zero = PatchAggregatorConfig { target_dim: Some(0), ..PatchAggregatorConfig::anomalib() };
    assert!(matches!(PatchAggregator::new(&zero), Err(Error::Config { field: "target_dim", .. })));
}

#[test]
fn autotraits() {
    fn check<T: Send + Sync>() {}
    check::<PatchAggregator>();
    check::<PatchAggregatorConfig>();
}
