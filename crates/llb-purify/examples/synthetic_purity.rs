//! Benchmark example: how the selection rules purify synthetic contaminated score sets, and how
//! long fusion and selection take at a large N.
//!
//! Run with `cargo run --release -p llb-purify --example synthetic_purity`; prints Markdown.
//! Fused scores of normal samples are 1 + 0.1·z and of anomalies 1 + 0.1·(shift + 1.5·|z|), z
//! standard normal (Box–Muller on SplitMix64, seed 7), N = 1000; timings use a uniform random
//! N = 100,000 × K = 5 table (seed 1).

#![allow(clippy::print_stdout, reason = "a benchmark example prints its table")]

use llb_purify::{
    Aggregator, BuiltinAggregator, BuiltinSelector, FusedScores, PurityReport, ScoreCell,
    ScoreTable, Selector,
};
use llb_types::{Label, SampleId};
use std::collections::BTreeMap;
use std::time::Instant;

/// SplitMix64, uniform in [0, 1).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn contaminated(n: usize, alpha: f64, shift: f64) -> (FusedScores, BTreeMap<SampleId, Label>) {
    let mut rng = Rng(7);
    let n_anomalous = (alpha * n as f64).round() as usize;
    let (mut ids, mut scores, mut labels) = (Vec::new(), Vec::new(), BTreeMap::new());
    for i in 0..n {
        let z = rng.normal();
        let (score, label) = if i < n_anomalous {
            (1.0 + 0.1 * (shift + 1.5 * z.abs()), Label::Anomalous)
        } else {
            (1.0 + 0.1 * z, Label::Normal)
        };
        let id = SampleId::new(format!("s{i:05}"));
        labels.insert(id.clone(), label);
        ids.push(id);
        scores.push(score as f32);
    }
    (FusedScores::new("synthetic", ids, scores).expect("finite synthetic scores"), labels)
}

fn main() -> llb_purify::Result<()> {
    let rules = [
        BuiltinSelector::KeepFraction { keep_fraction: 0.8 },
        BuiltinSelector::Mad { max_robust_z: 3.5 },
        BuiltinSelector::Mad { max_robust_z: 2.0 },
        BuiltinSelector::GmmSplit,
    ];
    println!("## Purity on synthetic fused scores (N = 1000)\n");
    println!(
        "| α | shift | {}",
        &PurityReport::markdown_header()[2..].replace("\n|", "\n|---|---|")
    );
    for (alpha, shift) in [(0.0, 0.0), (0.1, 2.0), (0.1, 4.0), (0.2, 4.0), (0.4, 4.0)] {
        let (fused, labels) = contaminated(1000, alpha, shift);
        for rule in rules {
            let report = PurityReport::new(&rule.select(&fused)?, &labels)?;
            println!("| {alpha} | {shift} {}", report.to_markdown());
        }
    }
    let (n, k) = (100_000, 5);
    let mut rng = Rng(1);
    let models = (0..k).map(|j| format!("m{j}")).collect();
    let rows = (0..n)
        .map(|i| {
            let cells = (0..k)
                .map(|j| ScoreCell { anomaly_score: rng.uniform() as f32, in_subset: i % k == j })
                .collect();
            (SampleId::new(format!("img/{i:06}.png")), cells)
        })
        .collect();
    let table = ScoreTable::new(models, rows)?;
    println!("\n## Time per rule (N = {n}, K = {k})\n\n| rule | ms |\n|---|---|");
    for rule in BuiltinAggregator::examples() {
        let start = Instant::now();
        rule.fuse(&table)?;
        println!("| {rule} | {:.1} |", start.elapsed().as_secs_f64() * 1e3);
    }
    let fused = BuiltinAggregator::Mean.fuse(&table)?;
    for rule in BuiltinSelector::examples() {
        let start = Instant::now();
        rule.select(&fused)?;
        println!("| {rule} | {:.1} |", start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(())
}
