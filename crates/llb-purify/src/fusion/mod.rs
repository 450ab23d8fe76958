//! Fusion rules: from a [`ScoreTable`](crate::ScoreTable) to one score per sample.

mod aggregator;
mod builtin;

pub use aggregator::Aggregator;
pub use builtin::BuiltinAggregator;
