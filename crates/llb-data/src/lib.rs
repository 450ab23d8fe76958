//! `llb-data`: Data set readers, FUIAD contamination and the built-in texture benchmark for llb.
//!
//! Work in progress: the public API is being built.
