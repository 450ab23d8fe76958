//! `llb-purify`: Score fusion and training-set selection for noisy anomaly detection, with an extensible rule registry.
//!
//! Work in progress: the public API is being built.
