//! Identifier types shared by every llb crate, with no dependency on the image or tensor stack,
//! and the crash-safe file writes and locks every crate that writes a file shares.
//!
//! The pipeline carries explicit sample ids end to end (data set → features → sub-models →
//! fusion → selection → final model), so that no stage ever relies on positions in a shuffled
//! vector. [`SampleId`] is that id, [`Label`] the hidden ground truth a data set may know, and
//! [`GroupId`] the physical sample that several camera views belong to. [`InputSpec`] says how
//! an encoder wants its images prepared (with the ImageNet statistics written once).
//!
//! [`atomic::write`] is the one way llb writes a file that a later run reads (unique temporary
//! name, `fsync`, rename, folder `fsync`), and [`FileLock`] the advisory lock between processes
//! that could write the same cache entry.
//!
//! With feature `sha256`, `sha256` is the one SHA-256 (as hex) the workspace hashes content with.
//!
//! With feature `gemm`, `gemm` is a bounds-checked f32 matrix product over strided views of
//! slices, on the kernel candle's CPU `matmul` uses, `fastmath` the vectorisable `erf`, GELU
//! and `exp` the CPU kernels share, and [`multiversion!`] compiles such a kernel for the
//! baseline, AVX2 + FMA and AVX-512 and picks one at run time.
//!
//! With feature `fuzz` (tests only), `fuzz` holds the stable-Rust fuzzing harness every parser
//! of outside bytes is tested with: seeded mutants of real files, panics counted, peak memory
//! measured.
//!
//! Invariants: ids are compared and ordered as strings, so sorting by id is stable across runs
//! and machines; a file written through [`atomic`] is never seen half-written.

pub mod atomic;
#[cfg(feature = "gemm")]
pub mod fastmath;
#[cfg(feature = "fuzz")]
pub mod fuzz;
#[cfg(feature = "gemm")]
pub mod gemm;
mod id;
mod input;
mod lock;
#[cfg(feature = "gemm")]
mod multiversion;
#[cfg(feature = "sha256")]
pub mod sha256;

pub use id::{GroupId, Label, SampleId};
pub use input::InputSpec;
pub use lock::FileLock;
