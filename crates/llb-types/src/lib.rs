//! Identifier types shared by every llb crate, with no dependency on the image or tensor stack.
//!
//! The pipeline carries explicit sample ids end to end (data set → features → sub-models →
//! fusion → selection → final model), so that no stage ever relies on positions in a shuffled
//! vector. [`SampleId`] is that id, [`Label`] the hidden ground truth a data set may know, and
//! [`GroupId`] the physical sample that several camera views belong to.
//!
//! Invariant: ids are compared and ordered as strings, so sorting by id is stable across runs
//! and machines.

mod id;

pub use id::{GroupId, Label, SampleId};
