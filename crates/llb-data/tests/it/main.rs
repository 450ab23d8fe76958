//! Integration tests of llb-data: the committed benchmark checksums and an end-to-end run.

// Real data from $LLB_CACHE, checked only when present.
mod cache;
// Committed checksum lists of the built-in benchmark, regenerated and compared.
mod checksums;
// Generator → reader → contamination → preprocessing, through the public API only.
mod pipeline;

#[test]
fn autotraits() {
    fn check<T: Send + Sync + 'static>() {}
    check::<llb_data::Dataset>();
    check::<llb_data::Sample>();
    check::<llb_data::PreparedImage>();
    check::<llb_data::PreparedMask>();
    check::<llb_data::Prepared<llb_data::PreparedImage>>();
    check::<llb_data::Error>();
    check::<llb_data::BenchmarkConfig>();
    check::<llb_data::Texture>();
}
