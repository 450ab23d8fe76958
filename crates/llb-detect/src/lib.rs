//! `llb-detect`: Anomaly detectors (PatchCore, SoftPatch, Dinomaly) on llb-features.
//!
//! Work in progress: the public API is being built.
