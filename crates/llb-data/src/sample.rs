//! Samples and data sets: what every reader returns.

use crate::contamination::ContaminationReport;
use crate::error::{Error, Result};
use llb_types::sha256::Sha256Hasher;
use llb_types::{GroupId, Label, SampleId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One image of a data set.
///
/// `label` is the hidden ground truth: in a contaminated training set it says which training
/// images are anomalous. Models must never read it; it exists for purity reports and for test
/// metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Stable id: the image path relative to the data set root, with `/` separators.
    pub id: SampleId,
    /// The image file.
    pub image_path: PathBuf,
    /// The ground-truth mask file (same size as the image, non-zero = defect), if any.
    pub mask_path: Option<PathBuf>,
    /// The hidden label, when the data set knows it.
    pub label: Option<Label>,
    /// The defect type (e.g. `scratch`), for anomalous samples of labelled data sets.
    pub defect_type: Option<String>,
    /// The physical sample the image belongs to (Real-IAD: one group holds 5 camera views).
    pub group: Option<GroupId>,
}

impl Sample {
    /// A sample with only an id and an image path (unlabelled, no mask, no group).
    pub fn unlabelled(id: SampleId, image_path: PathBuf) -> Self {
        Self { id, image_path, mask_path: None, label: None, defect_type: None, group: None }
    }

    /// `true` when the hidden label is [`Label::Anomalous`].
    pub fn is_anomalous(&self) -> bool {
        self.label.is_some_and(Label::is_anomalous)
    }
}

/// One category of a data set, split into training and test samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Category (MVTec AD, Real-IAD, benchmark) or object (VisA) name.
    pub category: String,
    /// The folder sample ids are relative to.
    pub root: PathBuf,
    /// Training samples, sorted by id. Clean data sets hold only normal images here, until
    /// [`contaminate`](crate::contaminate) moves anomalies in.
    pub train: Vec<Sample>,
    /// Test samples, sorted by id.
    pub test: Vec<Sample>,
    /// Anomalous samples held out of both splits, sorted by id: the source that
    /// [`contaminate`](crate::contaminate) draws training anomalies from, so that the test set
    /// stays the same whatever α and seed. Empty for data sets without one (then contamination
    /// moves test anomalies, the FUIAD protocol).
    #[serde(default)]
    pub pool: Vec<Sample>,
    /// Set when the training set was contaminated by this crate (or read from a FUIAD split).
    pub contamination: Option<ContaminationReport>,
}

impl Dataset {
    /// Sorts the splits and the pool by id and checks that no id occurs twice across them.
    ///
    /// # Errors
    /// [`Error::DuplicateId`] naming the first repeated id, with `origin` as its source.
    pub(crate) fn finish(mut self, origin: &Path) -> Result<Self> {
        self.train.sort_by(|a, b| a.id.cmp(&b.id));
        self.test.sort_by(|a, b| a.id.cmp(&b.id));
        self.pool.sort_by(|a, b| a.id.cmp(&b.id));
        check_unique_ids(self.train.iter().chain(&self.test).chain(&self.pool), origin)?;
        Ok(self)
    }

    /// Number of anomalous samples (by hidden label) in the training split.
    pub fn n_train_anomalous(&self) -> usize {
        self.train.iter().filter(|s| s.is_anomalous()).count()
    }

    /// Number of anomalous samples (by hidden label) in the test split.
    pub fn n_test_anomalous(&self) -> usize {
        self.test.iter().filter(|s| s.is_anomalous()).count()
    }
}

/// A pseudo-random 64-bit key of a sample for seeded draws that depend only on the id and the
/// seed, never on positions: the first 8 bytes (big-endian) of SHA-256 over `domain`, a zero
/// byte, `seed` (little-endian) and the id's bytes. Sorting by `(key, id)` gives a seeded random
/// order of any set of samples that does not change when samples are added, removed or reordered.
pub(crate) fn seeded_key(domain: &str, seed: u64, id: &SampleId) -> u64 {
    let mut hasher = Sha256Hasher::new();
    hasher.update(domain.as_bytes());
    hasher.update(&[0u8]);
    hasher.update(&seed.to_le_bytes());
    hasher.update(id.as_str().as_bytes());
    let digest = hasher.finish_bytes();
    u64::from_be_bytes(std::array::from_fn(|i| digest[i]))
}

/// Checks that every id occurs once.
///
/// # Errors
/// [`Error::DuplicateId`] naming the first repeated id, with `origin` as its source.
pub(crate) fn check_unique_ids<'a>(
    samples: impl IntoIterator<Item = &'a Sample>,
    origin: &Path,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for sample in samples {
        if !seen.insert(&sample.id) {
            return Err(Error::DuplicateId { id: sample.id.clone(), origin: origin.to_path_buf() });
        }
    }
    Ok(())
}

/// The id of `path` relative to `root`, with `/` separators.
///
/// # Errors
/// [`Error::Parse`] when `path` is not under `root` or is not valid UTF-8.
pub(crate) fn relative_id(root: &Path, path: &Path) -> Result<SampleId> {
    let rel = path.strip_prefix(root).map_err(|_| {
        Error::parse(path, format!("not inside the data set root {}", root.display()))
    })?;
    let mut parts = Vec::new();
    for part in rel.components() {
        let part = part
            .as_os_str()
            .to_str()
            .ok_or_else(|| Error::parse(path, "path is not valid UTF-8"))?;
        parts.push(part);
    }
    Ok(SampleId::new(parts.join("/")))
}

/// Fails with [`Error::MissingFile`] unless `path` is an existing file.
pub(crate) fn require_file(path: &Path, referenced_by: impl FnOnce() -> String) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(Error::MissingFile { path: path.to_path_buf(), referenced_by: referenced_by() })
    }
}

/// Whether a file name has an image extension this crate reads (png, jpg, jpeg, bmp, tif, tiff).
pub(crate) fn is_image_file(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff"))
}

/// Image files directly inside `dir` (not recursive), sorted by name.
///
/// # Errors
/// [`Error::Io`] when the folder cannot be listed.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_file() && is_image_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Sub-folders of `dir`, sorted by name.
///
/// # Errors
/// [`Error::Io`] when the folder cannot be listed.
pub(crate) fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}
