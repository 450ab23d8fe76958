//! The [`Aggregator`] trait: the extension point for fusion rules.

use crate::{FusedScores, Result, ScoreTable};

/// A fusion rule: turns the K raw scores of every sample into one fused anomaly score.
///
/// The trait is object-safe; registries hand out `Box<dyn Aggregator>`.
///
/// Contract (checked by the conformance kit in `llb_purify::testing`, feature `testing`):
/// - one fused score per table row, with the row's [`SampleId`](llb_types::SampleId), in row order;
/// - finite scores for a valid (finite) table, or an `Err`;
/// - deterministic: the same table gives the same bits;
/// - permutation-equivariant: permuting the table's rows permutes the output the same way, bit for
///   bit (sum in an order that does not depend on the row order, e.g. over sorted values).
pub trait Aggregator: Send + Sync {
    /// The rule's kebab-case name including its parameters, e.g. `trimmed-mean(0.1)`.
    fn name(&self) -> String;

    /// Fuses every row of `table`.
    ///
    /// # Errors
    /// When the rule cannot score some sample (e.g. `mean-out` on a sample every model saw) or a
    /// parameter is out of range.
    fn fuse(&self, table: &ScoreTable) -> Result<FusedScores>;
}

impl<A: Aggregator + ?Sized> Aggregator for Box<A> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn fuse(&self, table: &ScoreTable) -> Result<FusedScores> {
        (**self).fuse(table)
    }
}
