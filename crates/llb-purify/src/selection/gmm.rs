//! A two-component 1-D Gaussian mixture fitted by deterministic EM, for the `gmm-split` rule.

use crate::stats;

/// Upper bound on EM iterations.
const MAX_ITERATIONS: usize = 500;
/// EM stops when the mean log-likelihood changes by less than this.
const TOLERANCE: f64 = 1e-12;

/// A fitted mixture; component 0 has the lower mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Mixture {
    pub(crate) weight: [f64; 2],
    pub(crate) mean: [f64; 2],
    pub(crate) variance: [f64; 2],
}

impl Mixture {
    /// Log of weight × normal density of component `c` at `x`.
    fn log_joint(&self, c: usize, x: f64) -> f64 {
        let v = self.variance[c];
        self.weight[c].ln()
            - 0.5 * (2.0 * std::f64::consts::PI * v).ln()
            - (x - self.mean[c]).powi(2) / (2.0 * v)
    }

    /// Posterior probability that `x` belongs to the high component.
    pub(crate) fn posterior_high(&self, x: f64) -> f64 {
        let d = self.log_joint(0, x) - self.log_joint(1, x);
        1.0 / (1.0 + d.exp())
    }
}

/// Fits the mixture to `sorted` (ascending) by EM from a fixed start: means at the 25th and 75th
/// percentiles, both variances at the sample variance, equal weights.
///
/// Returns `None` when the data cannot support two components (fewer than 3 values, all equal)
/// or when the fit degenerates: a component holding less than one sample's worth of weight, or
/// components that are not clearly two modes, i.e. when either
/// - BIC prefers a single Gaussian: 2·(log L₂ − log L₁) ≤ 3·ln n (3 extra parameters), or
/// - Ashman's D = √2·|μ₁ − μ₀| / √(σ₀² + σ₁²) ≤ 2 (the usual bound for a clean separation);
///   without this, EM splits any unimodal or skewed distribution and the split would drop its
///   upper tail.
pub(crate) fn fit(sorted: &[f64]) -> Option<Mixture> {
    let n = sorted.len();
    if n < 3 || sorted[0] == sorted[n - 1] {
        return None;
    }
    let total_var = stats::variance(sorted);
    let floor = 1e-6 * total_var;
    let quantile = |q: f64| sorted[((n - 1) as f64 * q).round() as usize];
    let (mut lo, mut hi) = (quantile(0.25), quantile(0.75));
    if lo == hi {
        (lo, hi) = (sorted[0], sorted[n - 1]);
    }
    let mut mix = Mixture { weight: [0.5, 0.5], mean: [lo, hi], variance: [total_var, total_var] };
    let mut last_ll = f64::NEG_INFINITY;
    let mut ll = f64::NEG_INFINITY;
    let mut resp = vec![0.0; n];
    for _ in 0..MAX_ITERATIONS {
        // E step: responsibilities of the high component, and the mean log-likelihood.
        ll = 0.0;
        for (r, &x) in resp.iter_mut().zip(sorted) {
            let (a, b) = (mix.log_joint(0, x), mix.log_joint(1, x));
            let m = a.max(b);
            ll += m + ((a - m).exp() + (b - m).exp()).ln();
            *r = 1.0 / (1.0 + (a - b).exp());
        }
        ll /= n as f64;
        // M step.
        let w_hi: f64 = resp.iter().sum();
        let w = [n as f64 - w_hi, w_hi];
        if w[0] < 1.0 || w[1] < 1.0 {
            return None;
        }
        let mut mean = [0.0; 2];
        for (&r, &x) in resp.iter().zip(sorted) {
            mean[0] += (1.0 - r) * x;
            mean[1] += r * x;
        }
        mean = [mean[0] / w[0], mean[1] / w[1]];
        let mut var = [0.0; 2];
        for (&r, &x) in resp.iter().zip(sorted) {
            var[0] += (1.0 - r) * (x - mean[0]).powi(2);
            var[1] += r * (x - mean[1]).powi(2);
        }
        var = [(var[0] / w[0]).max(floor), (var[1] / w[1]).max(floor)];
        mix = Mixture { weight: [w[0] / n as f64, w[1] / n as f64], mean, variance: var };
        if (ll - last_ll).abs() < TOLERANCE {
            break;
        }
        last_ll = ll;
    }
    if mix.mean[0] > mix.mean[1] {
        mix = Mixture {
            weight: [mix.weight[1], mix.weight[0]],
            mean: [mix.mean[1], mix.mean[0]],
            variance: [mix.variance[1], mix.variance[0]],
        };
    }
    let ashman_d = std::f64::consts::SQRT_2 * (mix.mean[1] - mix.mean[0])
        / (mix.variance[0] + mix.variance[1]).sqrt();
    // `ll` is the mean log-likelihood of the last E step; a single Gaussian's is closed-form.
    let ll_one = -0.5 * ((2.0 * std::f64::consts::PI * total_var).ln() + 1.0);
    let n = n as f64;
    if ashman_d <= 2.0 || 2.0 * n * (ll - ll_one) <= 3.0 * n.ln() {
        return None;
    }
    Some(mix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_separated_clusters_are_recovered() {
        let mut v: Vec<f64> = (0..40).map(|i| 1.0 + 0.01 * f64::from(i % 7)).collect();
        v.extend((0..10).map(|i| 5.0 + 0.02 * f64::from(i % 5)));
        v.sort_by(f64::total_cmp);
        let m = fit(&v).unwrap();
        assert!((m.weight[1] - 0.2).abs() < 1e-6, "{m:?}");
        assert!((m.mean[0] - 1.03).abs() < 0.01 && (m.mean[1] - 5.04).abs() < 0.01, "{m:?}");
        assert!(m.posterior_high(1.1) < 1e-6 && m.posterior_high(5.0) > 1.0 - 1e-6);
    }

    #[test]
    fn degenerate_inputs_give_none() {
        assert_eq!(fit(&[1.0, 1.0, 1.0, 1.0]), None);
        assert_eq!(fit(&[1.0, 2.0]), None);
    }

    /// A deterministic approximately normal sample (Irwin–Hall: the sum of 12 uniforms minus 6,
    /// from a xorshift generator), mapped through `exp(skew · z)`; sorted.
    fn unimodal(n: usize, skew: f64) -> Vec<f64> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut v: Vec<f64> = (0..n)
            .map(|_| (skew * ((0..12).map(|_| uniform()).sum::<f64>() - 6.0)).exp())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    #[test]
    fn unimodal_and_skewed_samples_are_not_split() {
        // A Gaussian sample, and a log-normal one (skewed like real anomaly scores).
        assert_eq!(fit(&unimodal(400, 0.01)), None);
        assert_eq!(fit(&unimodal(400, 0.5)), None);
    }
}
