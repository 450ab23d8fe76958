//! Selection rules: from [`FusedScores`](crate::FusedScores) to the kept (purified) sample set.

mod builtin;
mod gmm;
mod selector;

pub use builtin::{BuiltinSelector, robust_upper_fence};
pub use selector::{Selection, Selector};
