//! Benchmark of the pixel evaluators: `bench_metrics <exact|binned> <n_maps> <n_bins>` feeds
//! `n_maps` synthetic 256×256 anomaly maps (seeded, generated one at a time) to one evaluator and
//! prints one JSON line with the time spent in the evaluator and the process's peak resident
//! memory (VmHWM). `cargo xtask bench metrics` runs it once per mode and size, each in its own
//! process so the peaks do not mix. `n_bins` is ignored by the exact mode.

#![allow(clippy::print_stdout, reason = "a benchmark prints its result")]

use llb_metrics::{BinnedConfig, BinnedPixelEvaluator, ExactPixelEvaluator, PixelEvaluator};
use std::time::Instant;

const SIDE: usize = 256;
const SEED: u64 = 20_250_811;

/// A seeded SplitMix64 stream.
struct SplitMix(u64);

impl SplitMix {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Fills one map and mask: every other image has up to three disc-shaped defects that score
/// higher than the background.
fn synthesize(rng: &mut SplitMix, index: usize, map: &mut [f32], mask: &mut [bool]) {
    mask.fill(false);
    if index % 2 == 1 {
        for _ in 0..1 + (rng.next_f32() * 3.0) as usize {
            let (cx, cy) = (rng.next_f32() * SIDE as f32, rng.next_f32() * SIDE as f32);
            let radius = 4.0 + rng.next_f32() * 20.0;
            for (p, m) in mask.iter_mut().enumerate() {
                let (dx, dy) = ((p % SIDE) as f32 - cx, (p / SIDE) as f32 - cy);
                *m |= dx * dx + dy * dy <= radius * radius;
            }
        }
    }
    for (s, &m) in map.iter_mut().zip(mask.iter()) {
        *s = 0.6 * rng.next_f32() + if m { 0.3 + 0.1 * rng.next_f32() } else { 0.0 };
    }
}

/// Peak resident set size of this process in MiB, from `/proc/self/status` (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, n_maps, n_bins] = args.as_slice() else {
        return Err("usage: bench_metrics <exact|binned> <n_maps> <n_bins>".into());
    };
    let n_maps: usize = n_maps.parse()?;
    let n_bins: usize = n_bins.parse()?;
    let mut exact = ExactPixelEvaluator::new();
    let config = BinnedConfig { n_bins: n_bins.max(1), min_score: 0.0, max_score: 1.0 };
    let mut binned = BinnedPixelEvaluator::new(&config)?;
    let evaluator: &mut dyn PixelEvaluator = match mode.as_str() {
        "exact" => &mut exact,
        "binned" => &mut binned,
        other => return Err(format!("unknown mode `{other}`, expected exact or binned").into()),
    };
    let baseline_mib = peak_rss_mib();
    let mut rng = SplitMix(SEED);
    let (mut map, mut mask) = (vec![0f32; SIDE * SIDE], vec![false; SIDE * SIDE]);
    let mut eval_seconds = 0.0;
    let start = Instant::now();
    for index in 0..n_maps {
        synthesize(&mut rng, index, &mut map, &mut mask);
        let t = Instant::now();
        evaluator.add(&map, &mask, SIDE, SIDE)?;
        eval_seconds += t.elapsed().as_secs_f64();
    }
    let t = Instant::now();
    let metrics = evaluator.finish()?;
    let finish_seconds = t.elapsed().as_secs_f64();
    let bound = if mode == "binned" { Some(binned.max_error()?) } else { None };
    let report = serde_json::json!({
        "mode": mode,
        "n_maps": n_maps,
        "map_side_px": SIDE,
        "n_bins": if mode == "binned" { Some(n_bins) } else { None },
        "add_seconds": eval_seconds,
        "finish_seconds": finish_seconds,
        "eval_seconds": eval_seconds + finish_seconds,
        "total_seconds": start.elapsed().as_secs_f64(),
        "baseline_rss_mib": baseline_mib,
        "peak_rss_mib": peak_rss_mib(),
        "p_auroc": metrics.auroc,
        "p_ap": metrics.ap,
        "p_f1max": metrics.f1max,
        "p_aupro": metrics.aupro,
        "p_auroc_max_error": bound.map(|b| b.auroc),
        "p_aupro_max_error": bound.map(|b| b.aupro),
    });
    println!("{report}");
    Ok(())
}
