//! Dinomaly's loss: global cosine distance per image with hard-point mining, and the token
//! distance the anomaly map is made of.

use candle_core::{D, Tensor};

use crate::Result;

/// Added to squared norms so that zero vectors give cosine 0 with finite gradients
/// (PyTorch's `CosineSimilarity` clamps each norm at 1e-8).
const NORM_EPS_SQ: f64 = 1e-16;

/// Per-token cosine distance `1 − cos(a, b)` over the last dimension: `[B, N, C]` → `[B, N]`.
pub(crate) fn token_distance(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dot = (a * b)?.sum(D::Minus1)?;
    let na = (a.sqr()?.sum(D::Minus1)? + NORM_EPS_SQ)?.sqrt()?;
    let nb = (b.sqr()?.sum(D::Minus1)? + NORM_EPS_SQ)?.sqrt()?;
    Ok((1.0 - (dot / (na * nb)?)?)?)
}

/// Per-image cosine distance of the whole flattened maps: `[B, N, C]` → `[B]`.
fn image_distance(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dot = (a * b)?.sum((1, 2))?;
    let na = (a.sqr()?.sum((1, 2))? + NORM_EPS_SQ)?.sqrt()?;
    let nb = (b.sqr()?.sum((1, 2))? + NORM_EPS_SQ)?.sqrt()?;
    Ok((1.0 - (dot / (na * nb)?)?)?)
}

/// Per-token gradient weights: `easy_grad_factor` for the easy tokens, 1 for the hard ones.
///
/// With `n` tokens in the batch, the threshold is the distance of the `⌊(1 − p)·n⌋`-th hardest
/// token (at least the first); tokens strictly below it are easy (official
/// `global_cosine_hm_percent`). Returns `None` when no token is easy.
pub(crate) fn easy_weights(distances: &[f32], easy_fraction: f64, factor: f64) -> Option<Vec<f32>> {
    let n = distances.len();
    let k = ((n as f64 * (1.0 - easy_fraction)).floor() as usize).clamp(1, n.max(1));
    if n == 0 || k >= n || factor == 1.0 {
        return None;
    }
    let mut sorted = distances.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let threshold = sorted[k - 1];
    let weights: Vec<f32> =
        distances.iter().map(|&d| if d < threshold { factor as f32 } else { 1.0 }).collect();
    weights.iter().any(|&w| w != 1.0).then_some(weights)
}

/// The training loss: mean over groups of the batch mean of `1 − cos` between the flattened
/// encoder target and decoder output of each image, where the gradient reaching the easy
/// tokens of the decoder output is scaled by `factor` (forward value unchanged:
/// `d·w + detach(d)·(1 − w)`).
///
/// `targets` and `outputs`: one `[B, N, C]` tensor per group; targets carry no gradient.
pub(crate) fn hard_mined_loss(
    targets: &[Tensor],
    outputs: &[Tensor],
    easy_fraction: f64,
    factor: f64,
) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (e, d) in targets.iter().zip(outputs) {
        let (b, n, _) = d.dims3()?;
        let distances = token_distance(e, &d.detach())?.flatten_all()?.to_vec1::<f32>()?;
        let d = match easy_weights(&distances, easy_fraction, factor) {
            Some(w) => {
                let w = Tensor::from_vec(w, (b, n, 1), d.device())?;
                let keep = d.broadcast_mul(&w)?;
                let frozen = d.detach().broadcast_mul(&(1.0 - &w)?)?;
                (keep + frozen)?
            }
            None => d.clone(),
        };
        let group = image_distance(e, &d)?.mean_all()?;
        total = Some(match total {
            Some(t) => (t + group)?,
            None => group,
        });
    }
    let total = total.ok_or_else(|| crate::Error::Empty { what: "loss groups".into() })?;
    Ok((total / targets.len() as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn easy_weights_keep_the_hardest_fraction() {
        let d = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0];
        // p = 0.7: the 3 hardest (0.9, 0.8, 0.7) keep full gradient.
        let w = easy_weights(&d, 0.7, 0.1).unwrap();
        let hard: Vec<f32> =
            d.iter().zip(&w).filter(|(_, w)| **w == 1.0).map(|(d, _)| *d).collect();
        assert_eq!(hard, vec![0.9, 0.7, 0.8]);
        assert!(w.iter().filter(|&&w| w != 1.0).all(|&w| (w - 0.1).abs() < 1e-7));
        // p = 0: nothing is easy.
        assert!(easy_weights(&d, 0.0, 0.1).is_none());
        // All equal: nothing is strictly below the threshold.
        assert!(easy_weights(&[0.2; 8], 0.9, 0.0).is_none());
        assert!(easy_weights(&[], 0.9, 0.0).is_none());
    }

    #[test]
    fn token_distance_is_zero_for_parallel_and_defined_for_zero() -> Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[[1f32, 2.0], [0.0, 0.0]]], &dev)?;
        let b = Tensor::new(&[[[2f32, 4.0], [0.0, 0.0]]], &dev)?;
        let d = token_distance(&a, &b)?.to_vec2::<f32>()?;
        assert!(d[0][0].abs() < 1e-6);
        assert_eq!(d[0][1], 1.0);
        Ok(())
    }

    #[test]
    fn easy_token_gradient_is_scaled_and_value_unchanged() -> Result<()> {
        let dev = Device::Cpu;
        // One image, two tokens: token 0 is reconstructed well (easy), token 1 badly (hard).
        let e = Tensor::new(&[[[1f32, 0.0], [0.0, 1.0]]], &dev)?;
        let init = Tensor::new(&[[[1f32, 0.1], [1.0, 0.0]]], &dev)?;
        let grads = |factor: f64| -> Result<(f32, Vec<Vec<f32>>)> {
            let d = Var::from_tensor(&init)?;
            let loss = hard_mined_loss(
                std::slice::from_ref(&e),
                std::slice::from_ref(d.as_tensor()),
                0.5,
                factor,
            )?;
            let g = loss.backward()?.get(&d).unwrap().squeeze(0)?.to_vec2::<f32>()?;
            Ok((loss.to_scalar::<f32>()?, g))
        };
        let (l1, g1) = grads(1.0)?;
        let (l0, g0) = grads(0.0)?;
        let (lh, gh) = grads(0.5)?;
        assert_eq!(l1, l0);
        assert_eq!(l1, lh);
        assert_eq!(g0[0], vec![0.0, 0.0]);
        assert_eq!(g0[1], g1[1]);
        for j in 0..2 {
            assert!((gh[0][j] - 0.5 * g1[0][j]).abs() < 1e-7);
        }
        assert!(g1[0].iter().any(|&g| g != 0.0));
        Ok(())
    }
}
