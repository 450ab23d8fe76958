//! `llb-submodel`: Stage 1 of learning-bias purification: K sub-models on subsets and the score table.
//!
//! Work in progress: the public API is being built.
