//! End-to-end tests of the `llb` binary: each module runs the built executable.

// `llb metrics` on temporary CSV files: JSON keys on stdout, exit code 2 naming a bad file.
mod metrics;
