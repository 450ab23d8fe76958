//! [`MapObserver`]: a hook that sees every anomaly map stage 1 computes, so a caller can keep
//! small previews of them (e.g. for a review page) without stage 1 holding any map itself.

use llb_types::SampleId;

/// Receives the anomaly maps stage 1 computes anyway while it scores the training set.
///
/// Stage 1 keeps no map: the observer decides what to keep, and should keep little (a
/// downsampled map per sample), since it sees `K · N` full-size maps.
///
/// Resume: when a sub-model's scores come from the resume cache, its maps are not computed again.
/// What [`MapObserver::finish_block`] returned for that sub-model is stored in the resume cache
/// beside its scores and handed back through [`MapObserver::resume_block`], so a resumed run
/// gives the observer the same information as an uninterrupted one.
pub trait MapObserver {
    /// One scored training sample of sub-model `block`: `map` is its anomaly map `[H, W]`
    /// row-major at [`TrainingSet::image_size_px`](crate::TrainingSet::image_size_px), higher =
    /// more anomalous; `in_subset` is `true` when the sub-model was fitted on the sample.
    fn observe(&mut self, block: usize, sample: &SampleId, in_subset: bool, map: &[f32]);

    /// Sub-model `block` has scored every sample. Returns bytes to store in the resume cache with
    /// the block's scores (`None`: nothing to store).
    fn finish_block(&mut self, block: usize) -> Option<Vec<u8>>;

    /// Sub-model `block`'s scores were reused from the resume cache: `saved` is what
    /// [`MapObserver::finish_block`] returned when they were computed, or `None` when the run that
    /// computed them stored nothing (no observer then).
    fn resume_block(&mut self, block: usize, saved: Option<Vec<u8>>);
}
