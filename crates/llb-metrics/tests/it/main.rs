//! Integration tests of `llb-metrics` through its public API only.

// Golden values from scikit-learn, scipy and numpy (tests/fixtures/metrics/make_fixtures.py).
mod golden;
