//! `llb-metrics`: Image, pixel and sample-level anomaly-detection metrics (AUROC, AP, F1max, AUPRO), exact and streaming.
//!
//! Work in progress: the public API is being built.
