//! Helpers shared by the benchmark examples (`cargo xtask bench`): where the asset cache is,
//! medians of timed runs, the machine's load (printed beside every ratio, since other processes
//! distort timings on a small machine), and peers: Python packages from PyPI in a virtual
//! environment under the cache, created on first use, never in CI or the repository.
//!
//! A dev-dependency of the crates with benchmark examples; no library depends on it.

mod peer;
mod timing;

pub use peer::{peer_off, python, run_json};
pub use timing::{median, median_secs};

use std::path::PathBuf;

/// The asset cache's root: `$LLB_CACHE`, else `~/.cache/llb` (as `llb fetch` uses it).
pub fn cache_root() -> PathBuf {
    std::env::var_os("LLB_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/llb"),
        PathBuf::from,
    )
}

/// `len` values uniform in `[0, 1)` from a ChaCha8 stream seeded with `seed` (the same values
/// on every machine, so every side of a benchmark gets the same bytes).
pub fn uniform_values(len: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random::<f32>()).collect()
}

/// The machine's load averages (`/proc/loadavg`), or an empty string where there is none.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}
