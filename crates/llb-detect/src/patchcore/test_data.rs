//! Synthetic patch features shared by the detector tests.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Normal features `[n, c, h, w]`: a per-position pattern shared by all images plus small noise.
pub(crate) fn normal_features(n: usize, c: usize, (h, w): (usize, usize), seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(n * c * h * w);
    for _ in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let pattern = ((ch * 7 + y * 3 + x * 5) % 11) as f32 / 11.0;
                    values.push(pattern + rng.random_range(-0.05..0.05));
                }
            }
        }
    }
    values
}

/// Moves the features of patch `(y, x)` of image `image` by `shift` in every channel.
pub(crate) fn plant(
    values: &mut [f32],
    c: usize,
    (h, w): (usize, usize),
    image: usize,
    (y, x): (usize, usize),
    shift: f32,
) {
    for ch in 0..c {
        values[((image * c + ch) * h + y) * w + x] += shift;
    }
}
