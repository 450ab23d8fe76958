//! `llb-assets`: Edge crate for the llb binaries: fetches pretrained weights and images from registries or the hub into a checksummed cache.
//!
//! Work in progress: the public API is being built.
