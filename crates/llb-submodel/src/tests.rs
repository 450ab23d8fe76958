//! Stage-1 tests with a toy detector: distance of each patch to the mean training patch.

use crate::{
    Error, MapObserver, PartitionConfig, PartitionMode, Stage1Config, Stage1Store, TrainingSet,
    fit_submodels, run_stage1, run_stage1_observed, run_stage1_stored,
};
use candle_core::{Device, Tensor};
use llb_detect::{Detector, Fit, ImageScoreRule};
use llb_types::{GroupId, SampleId};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Fits the mean patch `[C]`; counts how often it is fitted.
struct MeanPatch {
    fits: AtomicUsize,
}

struct MeanPatchModel {
    mean: Tensor,
}

impl Fit for MeanPatch {
    type Model = MeanPatchModel;
    fn fit(&self, _ids: &[SampleId], layers: &[Tensor]) -> llb_detect::Result<MeanPatchModel> {
        self.fits.fetch_add(1, Ordering::SeqCst);
        let mean = layers[0].mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?; // [1, C, 1, 1]
        Ok(MeanPatchModel { mean })
    }
}

impl Detector for MeanPatchModel {
    fn name(&self) -> String {
        "mean-patch".into()
    }
    fn anomaly_maps(&self, layers: &[Tensor], _size: (usize, usize)) -> llb_detect::Result<Tensor> {
        Ok(layers[0].broadcast_sub(&self.mean)?.sqr()?.sum(1)?.sqrt()?)
    }
}

/// A toy training set: `n` images of `[2, 3, 3]` features, normal ones near 0 and anomalous
/// ones (every 5th) near 4, with content hashes `content-<i>` standing in for image files.
struct Toy {
    ids: Vec<SampleId>,
    content: Vec<String>,
    groups: Vec<Option<GroupId>>,
    layers: [Tensor; 1],
}

impl Toy {
    fn new(n: usize) -> Self {
        let values: Vec<f32> = (0..n * 18)
            .map(|v| {
                let image = v / 18;
                let base = if image % 5 == 0 { 4.0 } else { 0.0 };
                base + ((v * 7919) % 13) as f32 / 100.0
            })
            .collect();
        Self {
            ids: (0..n).map(|i| SampleId::new(format!("train/{i:03}.png"))).collect(),
            content: (0..n).map(|i| format!("content-{i}")).collect(),
            groups: vec![None; n],
            layers: [Tensor::from_vec(values, (n, 2, 3, 3), &Device::Cpu).unwrap()],
        }
    }

    /// The same samples with their rows in reverse order.
    fn reversed(&self) -> Self {
        let n = self.ids.len();
        let index = Tensor::from_vec((0..n as u32).rev().collect(), n, &Device::Cpu).unwrap();
        Self {
            ids: self.ids.iter().rev().cloned().collect(),
            content: self.content.iter().rev().cloned().collect(),
            groups: self.groups.iter().rev().cloned().collect(),
            layers: [self.layers[0].index_select(&index, 0).unwrap()],
        }
    }

    /// Every sample, no fit mask.
    fn train(&self) -> TrainingSet<'_> {
        TrainingSet {
            ids: &self.ids,
            content_sha256: &self.content,
            groups: &self.groups,
            fit_mask: None,
            layers: &self.layers,
            image_size_px: (3, 3),
        }
    }
}

fn config(k: usize) -> Stage1Config {
    Stage1Config {
        partition: PartitionConfig { k, seed: 3, mode: PartitionMode::Random },
        screening_score: ImageScoreRule::TopMean { fraction: 0.01 },
        batch_size: 4,
    }
}

#[test]
fn every_sample_is_scored_by_every_submodel_with_membership_flags() {
    let toy = Toy::new(20);
    let train = toy.train();
    let fit = MeanPatch { fits: AtomicUsize::new(0) };
    let out = run_stage1(&fit, &train, &config(4), "toy", None).unwrap();
    assert_eq!(fit.fits.load(Ordering::SeqCst), 4);
    assert_eq!(out.table.n_samples(), 20);
    assert_eq!(out.table.n_models(), 4);
    let block_of = out.partition.block_of();
    for (id, cells) in out.table.rows() {
        for (j, cell) in cells.iter().enumerate() {
            assert_eq!(cell.in_subset, block_of[id] == j, "{id}, sub-model {j}");
            assert!(cell.anomaly_score.is_finite());
        }
    }
    // The planted anomalies (every 5th image) score above every normal image under each model.
    for j in 0..4 {
        let scores = out.table.column_scores(j);
        let worst_normal =
            (0..20).filter(|i| i % 5 != 0).map(|i| scores[i]).fold(f32::MIN, f32::max);
        let best_anomaly =
            (0..20).filter(|i| i % 5 == 0).map(|i| scores[i]).fold(f32::MAX, f32::min);
        assert!(best_anomaly > worst_normal, "sub-model {j}: {best_anomaly} vs {worst_normal}");
    }
}

#[test]
fn a_resumed_run_reuses_scores_and_gives_the_same_table() {
    let toy = Toy::new(15);
    let train = toy.train();
    let dir = tempfile::tempdir().unwrap();
    let first = MeanPatch { fits: AtomicUsize::new(0) };
    let a = run_stage1(&first, &train, &config(3), "toy", Some(dir.path())).unwrap();
    let second = MeanPatch { fits: AtomicUsize::new(0) };
    let b = run_stage1(&second, &train, &config(3), "toy", Some(dir.path())).unwrap();
    assert_eq!(second.fits.load(Ordering::SeqCst), 0, "nothing refitted");
    assert_eq!(a.table, b.table);
    // Another cache key (another detector) does not reuse the scores.
    let third = MeanPatch { fits: AtomicUsize::new(0) };
    run_stage1(&third, &train, &config(3), "other", Some(dir.path())).unwrap();
    assert_eq!(third.fits.load(Ordering::SeqCst), 3);
    // The same ids with other image contents (another folder with the same file names) refit
    // every sub-model instead of reusing the first folder's scores.
    let mut other_content = toy.content.clone();
    other_content[7] = "another-image".into();
    let train = TrainingSet { content_sha256: &other_content, ..train };
    let fourth = MeanPatch { fits: AtomicUsize::new(0) };
    run_stage1(&fourth, &train, &config(3), "toy", Some(dir.path())).unwrap();
    assert_eq!(fourth.fits.load(Ordering::SeqCst), 3, "other pixels, same names: recomputed");
}

/// Stage 1 split across jobs: K calls of `fit_submodels`, one subset each (in any order), then
/// a complete store gives the table of one uninterrupted run and fits nothing; a store lacking
/// a sub-model, or one keyed for other images, names the missing subset; a subset ≥ K is refused
/// before anything is fitted.
#[test]
fn submodels_fitted_one_per_job_assemble_to_the_uninterrupted_table() {
    let toy = Toy::new(15);
    let train = toy.train();
    let fit = MeanPatch { fits: AtomicUsize::new(0) };
    let alone = run_stage1(&fit, &train, &config(3), "toy", None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let complete = Stage1Store::Complete(dir.path());
    let missing = |err: Error| match err {
        Error::MissingSubmodel { subset, k: 3, .. } => subset,
        other => panic!("expected a missing sub-model, got {other}"),
    };
    for (done, subset) in [2, 0, 1].into_iter().enumerate() {
        let err = run_stage1_stored(&fit, &train, &config(3), "toy", complete, None).unwrap_err();
        assert_eq!(missing(err), [0, 0, 1][done], "the first sub-model not yet fitted");
        let job = MeanPatch { fits: AtomicUsize::new(0) };
        let partition =
            fit_submodels(&job, &train, &config(3), "toy", dir.path(), &[subset], None).unwrap();
        assert_eq!((partition.k(), job.fits.load(Ordering::SeqCst)), (3, 1), "one sub-model");
    }
    let assembler = MeanPatch { fits: AtomicUsize::new(0) };
    let assembled =
        run_stage1_stored(&assembler, &train, &config(3), "toy", complete, None).unwrap();
    assert_eq!(assembler.fits.load(Ordering::SeqCst), 0, "a complete store fits nothing");
    assert_eq!(assembled.table, alone.table);
    assert_eq!(assembled.partition, alone.partition);
    // Other settings or other pixels under the same ids find nothing in the folder.
    let err = run_stage1_stored(&fit, &train, &config(3), "other", complete, None).unwrap_err();
    assert_eq!(missing(err), 0);
    let mut other_content = toy.content.clone();
    other_content[4] = "another-image".into();
    let other = TrainingSet { content_sha256: &other_content, ..train };
    let err = run_stage1_stored(&fit, &other, &config(3), "toy", complete, None).unwrap_err();
    assert!(err.to_string().contains("sub-model 0 of 3"), "{err}");
    assert!(err.blames_input());
    // Subset K is out of range and fits nothing.
    let job = MeanPatch { fits: AtomicUsize::new(0) };
    let err = fit_submodels(&job, &train, &config(3), "toy", dir.path(), &[3], None).unwrap_err();
    assert!(matches!(err, Error::SubsetOutOfRange { subset: 3, k: 3 }), "{err}");
    assert!(err.to_string().contains("numbered 0 to 2") && err.blames_input(), "{err}");
    assert_eq!(job.fits.load(Ordering::SeqCst), 0);
}

#[test]
fn a_submodel_sees_its_block_whatever_the_input_order() {
    // Reversing the input rows (ids with them) gives the same table: partition and fits follow
    // ids, not positions.
    let toy = Toy::new(12);
    let fit = MeanPatch { fits: AtomicUsize::new(0) };
    let a = run_stage1(&fit, &toy.train(), &config(3), "toy", None).unwrap();
    let b = run_stage1(&fit, &toy.reversed().train(), &config(3), "toy", None).unwrap();
    let sorted = |t: &llb_purify::ScoreTable| {
        let mut rows: Vec<_> =
            t.rows().map(|(id, cells)| (id.clone(), format!("{cells:?}"))).collect();
        rows.sort();
        rows
    };
    assert_eq!(sorted(&a.table), sorted(&b.table));
}

/// Records what stage 1 shows it: `(block, sample, in_subset, map length)` and the blocks
/// finished and resumed; `finish_block` returns the block's observation count as bytes.
#[derive(Default)]
struct Recorder {
    seen: Vec<(usize, SampleId, bool, usize)>,
    finished: Vec<usize>,
    resumed: Vec<(usize, Option<Vec<u8>>)>,
}

impl MapObserver for Recorder {
    fn observe(&mut self, block: usize, sample: &SampleId, in_subset: bool, map: &[f32]) {
        self.seen.push((block, sample.clone(), in_subset, map.len()));
    }
    fn finish_block(&mut self, block: usize) -> Option<Vec<u8>> {
        self.finished.push(block);
        let n = self.seen.iter().filter(|s| s.0 == block).count();
        Some(format!("block {block}: {n} maps").into_bytes())
    }
    fn resume_block(&mut self, block: usize, saved: Option<Vec<u8>>) {
        self.resumed.push((block, saved));
    }
}

#[test]
fn the_observer_sees_every_map_once_and_gets_its_bytes_back_on_resume() {
    let toy = Toy::new(10);
    let train = toy.train();
    let dir = tempfile::tempdir().unwrap();
    let fit = MeanPatch { fits: AtomicUsize::new(0) };
    let mut first = Recorder::default();
    let out =
        run_stage1_observed(&fit, &train, &config(2), "toy", Some(dir.path()), Some(&mut first))
            .unwrap();
    let block_of = out.partition.block_of();
    let mut expected: Vec<_> = (0..2)
        .flat_map(|j| toy.ids.iter().map(move |id| (j, id.clone())))
        .map(|(j, id)| (j, id.clone(), block_of[&id] == j, 9))
        .collect();
    let mut seen = first.seen.clone();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
    assert_eq!((first.finished, first.resumed.len()), (vec![0, 1], 0));

    let mut second = Recorder::default();
    let again =
        run_stage1_observed(&fit, &train, &config(2), "toy", Some(dir.path()), Some(&mut second))
            .unwrap();
    assert_eq!(again.table, out.table);
    assert!(second.seen.is_empty() && second.finished.is_empty(), "nothing recomputed");
    let saved = |j: usize| Some(format!("block {j}: 10 maps").into_bytes());
    assert_eq!(second.resumed, vec![(0, saved(0)), (1, saved(1))]);

    // Scores cached by a run without an observer come back without maps.
    let other = tempfile::tempdir().unwrap();
    run_stage1(&fit, &train, &config(2), "toy", Some(other.path())).unwrap();
    let mut third = Recorder::default();
    run_stage1_observed(&fit, &train, &config(2), "toy", Some(other.path()), Some(&mut third))
        .unwrap();
    assert_eq!(third.resumed, vec![(0, None), (1, None)]);
}

#[test]
fn inconsistent_inputs_are_errors() {
    let toy = Toy::new(6);
    let train = TrainingSet {
        ids: &toy.ids[..5],
        content_sha256: &toy.content[..5],
        groups: &toy.groups[..5],
        ..toy.train()
    };
    let fit = MeanPatch { fits: AtomicUsize::new(0) };
    let err = run_stage1(&fit, &train, &config(2), "toy", None).unwrap_err();
    assert!(err.to_string().contains("6 rows for 5 ids"), "{err}");
    let train = toy.train();
    let err = run_stage1(&fit, &train, &config(7), "toy", None).unwrap_err();
    assert!(err.to_string().contains("k = 7"), "{err}");
}

#[test]
fn autotraits() {
    fn check<T: Send + Sync>() {}
    check::<crate::Partition>();
    check::<crate::Stage1Config>();
    check::<crate::Stage1Output>();
    check::<crate::Error>();
}

#[test]
fn a_fit_mask_keeps_distrusted_samples_out_of_every_submodel() {
    // Masking out the anomalies (every 5th image) moves each sub-model's mean patch to the
    // normal images: anomalies score higher and normal images lower than without the mask.
    let toy = Toy::new(20);
    let mask: Vec<bool> = (0..20).map(|i| i % 5 != 0).collect();
    let base = toy.train();
    let fit = MeanPatch { fits: AtomicUsize::new(0) };
    let plain = run_stage1(&fit, &base, &config(2), "toy", None).unwrap();
    let masked_set = TrainingSet { fit_mask: Some(&mask), ..base };
    let masked = run_stage1(&fit, &masked_set, &config(2), "toy", None).unwrap();
    for j in 0..2 {
        let (before, after) = (plain.table.column_scores(j), masked.table.column_scores(j));
        for i in 0..20 {
            if i % 5 == 0 {
                assert!(after[i] > before[i], "anomaly {i}, model {j}");
            } else {
                assert!(after[i] < before[i], "normal {i}, model {j}");
            }
        }
    }
    let short = [true; 3];
    let err =
        run_stage1(&fit, &TrainingSet { fit_mask: Some(&short), ..base }, &config(2), "toy", None)
            .unwrap_err();
    assert!(err.to_string().contains("fit mask of 3 for 20 ids"), "{err}");
}
