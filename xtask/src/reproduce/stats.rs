//! Estimates with 95 % intervals over replicate seeds.
//!
//! The replicate is the seed: it draws the contamination and seeds every random choice of the
//! fits. A quantity defined per (category, seed) is first averaged over categories within each
//! seed, then summarised over seeds as mean ± t₀.₉₇₅,ₙ₋₁ · s / √n (Student's t interval). Paired
//! differences are formed per (category, seed) before averaging, so the spread they carry is
//! that of the difference, not of each side.

/// A mean with the half-width of its 95 % interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Estimate {
    /// The mean over replicates.
    pub(crate) mean: f64,
    /// Half-width of the 95 % t interval; `None` with fewer than two replicates.
    pub(crate) half_width: Option<f64>,
    /// Number of replicates.
    pub(crate) n: usize,
}

impl Estimate {
    /// Mean and 95 % t interval of `values` (one per replicate); `None` when empty.
    pub(crate) fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let half_width = (n >= 2).then(|| {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t_975(n - 1) * (var / n as f64).sqrt()
        });
        Some(Self { mean, half_width, n })
    }

    /// Whether the interval lies entirely above zero.
    pub(crate) fn clearly_positive(&self) -> bool {
        self.half_width.is_some_and(|h| self.mean - h > 0.0)
    }

    /// `81.2 ± 1.3` with values scaled by `scale` (100 for percentages) and `digits` decimals.
    pub(crate) fn format(&self, scale: f64, digits: usize) -> String {
        match self.half_width {
            Some(h) => format!("{:.digits$} ± {:.digits$}", scale * self.mean, scale * h),
            None => format!("{:.digits$}", scale * self.mean),
        }
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (table for 1–30, the normal
/// quantile beyond).
pub(crate) fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => 1.960,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_matches_a_hand_computation() {
        // mean 2, s = 1, n = 3: half-width = 4.303 / √3.
        let e = Estimate::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(e.mean, 2.0);
        assert!((e.half_width.unwrap() - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert!(!e.clearly_positive(), "2 ± 2.48 reaches below zero");
        assert!(Estimate::of(&[1.0, 1.1, 1.2]).unwrap().clearly_positive());
        assert_eq!(e.format(1.0, 1), "2.0 ± 2.5");
        let one = Estimate::of(&[0.5]).unwrap();
        assert_eq!((one.half_width, one.format(100.0, 1)), (None, "50.0".to_owned()));
        assert!(!Estimate::of(&[-1.0, 1.0]).unwrap().clearly_positive());
        assert!(Estimate::of(&[]).is_none());
        assert_eq!(t_975(1000), 1.96);
    }
}
