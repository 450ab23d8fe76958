//! The schema of llb's experiment results: one [`ResultRow`] per fitted and evaluated
//! configuration, gathered with the run's manifest in a [`Results`] file (`results/<name>.json`).
//!
//! Place in the pipeline: `llb experiment` (llb-cli) writes these files, and `cargo xtask
//! reproduce` reads them back to render `docs/tables`; both use these types, so a field added on
//! one side is seen by the other. [`ScreeningQuality`] is the stage-1 record a purified row
//! carries (computed by llb-pipeline); the purity of the kept set is llb-purify's `PurityReport`.
//!
//! Invariants: every type denies unknown fields, so a renamed or removed field fails to parse
//! instead of reading as missing; the manifest type is the caller's (the CLI's full manifest, or
//! the parts the renderer reads).

mod row;
mod screening;

pub use row::{ResultRow, Results};
pub use screening::ScreeningQuality;
