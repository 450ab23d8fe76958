//! Score fusion and training-set selection for noisy anomaly detection, with an extensible rule
//! registry.
//!
//! This is steps 3–5 of stage 1 of learning-bias purification (Zhang et al., arXiv 2508.07441):
//! K sub-models, each fitted on one block of an unlabeled, contaminated training set, score every
//! training image; a fusion rule turns the K raw scores into one fused anomaly score; a selection
//! rule keeps the lowest-scoring images as the purified set that stage 2 trains on.
//!
//! Inputs are plain data: a [`ScoreTable`] of `f32` scores keyed by [`SampleId`](llb_types::SampleId)
//! with in-subset flags (from `llb-submodel`, or any other project's scores, or a CSV file).
//! Outputs are [`FusedScores`], a [`Selection`] (kept ids, dropped ids, cut), and, when hidden
//! labels exist, a [`PurityReport`] and a [`Histogram`]. No tensors, no image stack.
//!
//! - Fusion: the object-safe [`Aggregator`] trait, the [`BuiltinAggregator`] enum (`mean` — the
//!   paper's rule —, `max`, `max-var`, `mean-out`, `median`, `trimmed-mean(p)`, `rank-mean`,
//!   `zscore-mean`) and an [`AggregatorRegistry`].
//! - Selection: the [`Selector`] trait, the [`BuiltinSelector`] enum (`keep-fraction(t)` — the
//!   paper's rule —, `mad(z)`, `gmm-split`) and a [`SelectorRegistry`].
//! - [`PurifyConfig`] with presets named after their source, and [`purify`].
//! - [`Decisions`]: a person's keep / drop calls from a `decisions.csv`, applied to a selection by
//!   [`Selection::apply_decisions`].
//!
//! Invariants:
//! - sample ids travel with every score; no rule ever relies on row positions;
//! - every built-in rule is deterministic and permutation-equivariant bit for bit (the
//!   conformance kit, `testing`, checks this for any rule);
//! - `keep-fraction(t)` keeps exactly the ⌊t·N⌋ lowest fused scores, ties broken by id, whatever
//!   the input order (the official code does not);
//! - bad input is a typed [`Error`] naming the sample, model, file or rule, never a panic or NaN.
//!
//! # Example: a downstream rule, registered and used by name
//!
//! ```
//! use llb_purify::{
//!     Aggregator, AggregatorRegistry, FusedScores, Result, ScoreCell, ScoreTable, SelectorRegistry, purify,
//! };
//! use llb_types::SampleId;
//!
//! /// Fused score: the spread (max − min) of the K raw scores, times `weight`.
//! struct Spread {
//!     weight: f64,
//! }
//!
//! impl Aggregator for Spread {
//!     fn name(&self) -> String {
//!         format!("spread({})", self.weight)
//!     }
//!
//!     fn fuse(&self, table: &ScoreTable) -> Result<FusedScores> {
//!         let scores = table
//!             .rows()
//!             .map(|(_, row)| {
//!                 let max = row.iter().map(|c| c.anomaly_score).fold(f32::MIN, f32::max);
//!                 let min = row.iter().map(|c| c.anomaly_score).fold(f32::MAX, f32::min);
//!                 (self.weight * f64::from(max - min)) as f32
//!             })
//!             .collect();
//!         FusedScores::new(self.name(), table.sample_ids().to_vec(), scores)
//!     }
//! }
//!
//! let mut aggregators = AggregatorRegistry::with_builtins();
//! aggregators.register("spread", |params| {
//!     let weight = params.as_f64().unwrap_or(1.0);
//!     Ok(Box::new(Spread { weight }))
//! })?;
//! let selectors = SelectorRegistry::with_builtins();
//!
//! let models = vec!["m0".to_string(), "m1".to_string()];
//! let rows = (0..5)
//!     .map(|i| {
//!         let s = i as f32;
//!         (SampleId::new(format!("{i}.png")), vec![ScoreCell::in_subset(s), ScoreCell::out_of_subset(2.0 * s)])
//!     })
//!     .collect();
//! let table = ScoreTable::new(models, rows)?;
//!
//! let fusion = aggregators.build("spread(2)")?;
//! let selection = selectors.build("keep-fraction(0.4)")?;
//! let out = purify(&table, fusion.as_ref(), selection.as_ref())?;
//! assert_eq!(out.fused.rule(), "spread(2)");
//! assert_eq!(out.selection.kept, [SampleId::new("0.png"), SampleId::new("1.png")]);
//! assert!(aggregators.build("nope").is_err());
//! # Ok::<(), llb_purify::Error>(())
//! ```

mod config;
mod csv;
mod decisions;
mod error;
mod fused;
mod fusion;
mod histogram;
mod purity;
mod registry;
mod selection;
mod spec;
mod stats;
mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use config::{Purification, PurifyConfig, purify};
pub use csv::SCORE_CSV_HEADER;
pub use decisions::{DECISIONS_CSV_HEADER, Decision, Decisions};
pub use error::{Error, Result};
pub use fused::FusedScores;
pub use fusion::{Aggregator, BuiltinAggregator};
pub use histogram::{Histogram, HistogramBin};
pub use purity::PurityReport;
pub use registry::{AggregatorRegistry, Constructor, Registry, SelectorRegistry};
pub use selection::{BuiltinSelector, Selection, Selector, robust_upper_fence};
pub use spec::{RuleSpec, check_rule_name};
pub use table::{ScoreCell, ScoreTable};
