//! Counter-based random streams: every random draw of a fit is a pure function of
//! `(seed, purpose, index)`, so a resumed training run replays exactly the same draws.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a random stream is used for; each purpose gets independent streams.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    /// Weight initialisation (index 0).
    Init = 1,
    /// The dropout masks of one iteration (index = iteration).
    Dropout = 3,
}

/// The random stream for `(seed, purpose, index)`.
pub(crate) fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// A standard normal draw (Box–Muller on two uniforms).
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // `1 - u` lies in (0, 1], so the logarithm is finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Keep-masks for dropout: one byte per element, 1 with probability `1 − p`.
pub(crate) fn keep_mask(rng: &mut ChaCha8Rng, len: usize, p: f64) -> Vec<u8> {
    // Compare 32-bit uniforms with an integer threshold: exact and fast.
    let threshold = (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u64;
    (0..len).map(|_| u8::from(u64::from(rng.random::<u32>()) >= threshold)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: u64 = stream(7, Purpose::Dropout, 3).random();
        let b: u64 = stream(7, Purpose::Dropout, 3).random();
        let c: u64 = stream(7, Purpose::Dropout, 4).random();
        let d: u64 = stream(7, Purpose::Init, 3).random();
        let e: u64 = stream(8, Purpose::Dropout, 3).random();
        assert_eq!(a, b);
        assert!(a != c && a != d && a != e);
    }

    #[test]
    fn keep_mask_rate_matches_p() {
        let mask = keep_mask(&mut stream(1, Purpose::Dropout, 0), 100_000, 0.2);
        let kept = mask.iter().map(|&m| m as usize).sum::<usize>() as f64 / 1e5;
        assert!((kept - 0.8).abs() < 0.01, "kept fraction {kept}");
        assert!(keep_mask(&mut stream(1, Purpose::Dropout, 0), 100, 0.0).iter().all(|&m| m == 1));
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = stream(3, Purpose::Init, 0);
        let xs: Vec<f64> = (0..50_000).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "mean {mean} var {var}");
    }
}
