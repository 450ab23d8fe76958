//! A saved model folder: `llb.json` (the [`ModelCard`]) and `detector/` (the detector in
//! `llb-detect`'s saved-model format), written as a whole or not at all.
//!
//! # Crash safety
//!
//! [`OutputFolder`] writes a folder such as `out/` in four steps:
//!
//! 1. everything goes into a fresh temporary sibling `.out.<pid>.<random>.tmp/`, each file
//!    written with `llb_types::atomic` (`fsync`ed); top-level entries of an existing `out/` that
//!    the new run does not write (a person's files, older outputs) are hard-linked into it, and
//!    every folder in it is `fsync`ed;
//! 2. an existing `out/` is renamed aside to `.out.<pid>.<random>.old`;
//! 3. the temporary folder is renamed to `out/`, and the parent folder is `fsync`ed;
//! 4. the aside folder is removed (its `llb.json` first), and so are the temporary and aside
//!    folders of runs that were killed (their process is gone); an existing `out/` being in
//!    place, those of killed runs are also removed before step 2, so at most one whole aside
//!    copy exists at any time.
//!
//! A kill before step 2 leaves the old `out/` untouched; after step 3, the new one is in place.
//! Between steps 2 and 3, `out/` is missing and the old model lies whole in the aside folder:
//! [`Model::load`] then reads it from there, and the next [`OutputFolder::commit`] replaces it.
//! A model at the path is therefore always either the old one or the new one, whole.

use crate::backbone::FittedDetector;
use crate::card::{FORMAT, ModelCard, READABLE_FORMATS};
use crate::error::{Error, Result};
use crate::extract::Extractor;
use candle_core::Device;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The model card's file name inside a model folder.
pub const CARD_FILE: &str = "llb.json";
/// The detector's folder inside a model folder.
pub const DETECTOR_DIR: &str = "detector";

/// A fitted model read back from its folder.
pub struct Model {
    /// How it was made and how to use it.
    pub card: ModelCard,
    /// The final detector.
    pub detector: FittedDetector,
    /// The card file it was read from.
    pub card_path: PathBuf,
}

impl Model {
    /// Reads the model folder `dir` written through [`OutputFolder::save_model`] (or, when a
    /// replacement was killed half-way, the whole old model it left aside; see the module docs).
    ///
    /// # Errors
    /// A missing or unreadable folder, a card of another format ([`Error::ModelFormat`]), or a
    /// detector whose own card disagrees with `llb.json`.
    pub fn load(dir: &Path, device: &Device) -> Result<Model> {
        let dir = OutputFolder::current(dir);
        let card_path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&card_path).map_err(Error::io(&card_path))?;
        let format = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(Error::json(&card_path))?
            .get("format")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if !READABLE_FORMATS.iter().any(|&f| u64::from(f) == format) {
            return Err(Error::ModelFormat { path: card_path, found: format as u32 });
        }
        let card: ModelCard = serde_json::from_str(&text).map_err(Error::json(&card_path))?;
        let detector_dir = dir.join(DETECTOR_DIR);
        let (detector, own) = FittedDetector::load(&card.settings.detector, &detector_dir, device)
            .map_err(|e| Error::during(format!("reading {}", detector_dir.display()))(e.into()))?;
        if own.encoder_weights_sha256 != card.weights_sha256
            || own.image_score_rule != card.settings.test_score
        {
            return Err(Error::Settings(format!(
                "{} and {} disagree on the encoder weights or the score rule: the folder mixes \
                 two models",
                card_path.display(),
                detector_dir.display()
            )));
        }
        Ok(Model { card, detector, card_path })
    }

    /// Checks that `extractor` runs the encoder weights the model was fitted with.
    ///
    /// # Errors
    /// [`Error::WeightsMismatch`], naming both hashes, the card and the weights file.
    pub fn check_weights(&self, extractor: &Extractor) -> Result<()> {
        let weights_sha256 = &extractor.key().weights_sha256;
        if *weights_sha256 == self.card.weights_sha256 {
            return Ok(());
        }
        Err(Error::WeightsMismatch {
            card: self.card_path.clone(),
            model_sha256: self.card.weights_sha256.clone(),
            weights: extractor.weights().to_path_buf(),
            weights_sha256: weights_sha256.clone(),
        })
    }
}

/// A folder written into a temporary sibling and renamed into place by [`OutputFolder::commit`]
/// (see the module docs). Dropped without a commit, the temporary folder is removed.
pub struct OutputFolder {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl OutputFolder {
    /// The folder that holds the last whole commit of `target`: `target` itself, or, while a
    /// killed replacement left it missing, the whole old folder it moved aside (step 2 of the
    /// module docs). [`Model::load`] reads from here.
    pub fn current(target: &Path) -> PathBuf {
        if target.exists() {
            return target.to_path_buf();
        }
        siblings(target, ".old")
            .into_iter()
            .map(|(path, _)| path)
            .find(|path| path.join(CARD_FILE).is_file())
            .unwrap_or_else(|| target.to_path_buf())
    }

    /// Starts writing `target`: creates its temporary sibling.
    ///
    /// # Errors
    /// The parent folder cannot be created or written.
    pub fn create(target: &Path) -> Result<Self> {
        let parent = parent_of(target);
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        let temp = llb_types::atomic::temp_path(target);
        std::fs::create_dir(&temp).map_err(Error::io(&temp))?;
        Ok(Self { target: target.to_path_buf(), temp, committed: false })
    }

    /// The folder to write into now (the temporary sibling).
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// The folder the outputs will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// `path` (under [`OutputFolder::path`]) as it will be named once committed.
    pub fn final_path(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.temp).map_or_else(|_| path.to_path_buf(), |r| self.target.join(r))
    }

    /// Writes the model: `detector/` (its own card, from `extractor`, carries no threshold: the
    /// threshold lives in `llb.json`), then `llb.json`.
    ///
    /// # Errors
    /// An IO or serialisation failure, naming the file.
    pub fn save_model(
        &self,
        card: &ModelCard,
        extractor: &Extractor,
        model: &FittedDetector,
    ) -> Result<()> {
        if card.format != FORMAT {
            return Err(Error::Settings(format!("writing a card of format {}", card.format)));
        }
        let detector_card = llb_detect::ModelCard {
            encoder: extractor.key().encoder.clone(),
            encoder_weights_sha256: extractor.key().weights_sha256.clone(),
            input_spec: extractor.input_spec(),
            image_size_px: [extractor.image_size_px(); 2],
            image_score_rule: card.settings.test_score,
            image_score_threshold: None,
        };
        let detector_dir = self.temp.join(DETECTOR_DIR);
        model
            .save(&detector_dir, &detector_card)
            .map_err(|e| Error::during(format!("writing {}", detector_dir.display()))(e.into()))?;
        write_json(&self.temp.join(CARD_FILE), card)
    }

    /// Puts the folder in place (steps 1 to 4 of the module docs).
    ///
    /// # Errors
    /// An IO failure, naming the file or folder; the old folder is then still in place (or
    /// aside, where [`Model::load`] finds it).
    pub fn commit(mut self) -> Result<PathBuf> {
        let parent = parent_of(&self.target).to_path_buf();
        if self.target.exists() {
            // The model is in place, so killed runs' aside copies are not needed: removing them
            // now keeps at most one whole aside copy for `Model::load` to find.
            remove_stale(&self.target);
            carry_over(&self.target, &self.temp)?;
        }
        sync_tree(&self.temp)?;
        let aside = self.target.exists().then(|| aside_path(&self.target));
        if let Some(aside) = &aside {
            std::fs::rename(&self.target, aside).map_err(Error::io(&self.target))?;
            sync(&parent)?;
            tracing::debug!(aside = %aside.display(), "moved the old folder aside");
        }
        std::fs::rename(&self.temp, &self.target).map_err(Error::io(&self.target))?;
        self.committed = true;
        sync(&parent)?;
        tracing::debug!(folder = %self.target.display(), "renamed the new folder into place");
        if let Some(aside) = aside {
            remove_folder(&aside).map_err(Error::io(&aside))?;
        }
        remove_stale(&self.target);
        Ok(self.target.clone())
    }
}

impl Drop for OutputFolder {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

/// Pretty JSON, written atomically.
///
/// # Errors
/// An IO or serialisation failure, naming the file.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(Error::json(path))?;
    llb_types::atomic::write(path, &json).map_err(Error::io(path))
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `.<name>.<pid>.<random>.old` beside `target` (a temporary name with another suffix).
fn aside_path(target: &Path) -> PathBuf {
    let temp = llb_types::atomic::temp_path(target);
    temp.with_extension("old")
}

/// Siblings of `target` named `.<name>.<pid>.<16 hex>{suffix}`, with their process ids.
fn siblings(target: &Path, suffix: &str) -> Vec<(PathBuf, u32)> {
    let Some(name) = target.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(parent_of(target)) else { return Vec::new() };
    let mut out: Vec<(PathBuf, u32)> = entries
        .flatten()
        .filter_map(|entry| {
            let file_name = entry.file_name();
            let rest = file_name.to_str()?.strip_prefix('.')?.strip_suffix(suffix)?;
            let (rest, random) = rest.rsplit_once('.')?;
            let (stem, pid) = rest.rsplit_once('.')?;
            let hex = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
            (hex && stem == name).then_some(())?;
            Some((entry.path(), pid.parse().ok()?))
        })
        .collect();
    out.sort();
    out
}

/// Removes the temporary and aside folders of `target` left by runs that were killed.
fn remove_stale(target: &Path) {
    for suffix in [llb_types::atomic::TEMP_SUFFIX, ".old"] {
        for (path, pid) in siblings(target, suffix) {
            let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
            if cfg!(target_os = "linux") && !alive {
                let _ = remove_folder(&path);
            }
        }
    }
}

/// Removes a model folder card first, so that a folder whose removal is interrupted is never
/// taken for a whole model.
fn remove_folder(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path.join(CARD_FILE)) {
        Ok(()) => llb_types::atomic::sync_dir(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::remove_dir_all(path)
}

/// Hard-links (or copies) into `new` the top-level entries of `old` that `new` lacks.
fn carry_over(old: &Path, new: &Path) -> Result<()> {
    for entry in std::fs::read_dir(old).map_err(Error::io(old))? {
        let entry = entry.map_err(Error::io(old))?;
        let to = new.join(entry.file_name());
        if to.symlink_metadata().is_err() {
            link_tree(&entry.path(), &to)?;
        }
    }
    Ok(())
}

fn link_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = from.symlink_metadata().map_err(Error::io(from))?;
    if meta.is_dir() {
        std::fs::create_dir(to).map_err(Error::io(to))?;
        for entry in std::fs::read_dir(from).map_err(Error::io(from))? {
            let entry = entry.map_err(Error::io(from))?;
            link_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        #[cfg(unix)]
        {
            let link = std::fs::read_link(from).map_err(Error::io(from))?;
            std::os::unix::fs::symlink(link, to).map_err(Error::io(to))?;
        }
    } else if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(Error::io(to))?;
    }
    Ok(())
}

/// `fsync`s every folder under `dir` (files were synced when written).
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        if entry.file_type().map_err(Error::io(dir))?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync(dir)
}

fn sync(dir: &Path) -> Result<()> {
    llb_types::atomic::sync_dir(dir).map_err(Error::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_folder_replaces_the_old_one_and_keeps_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let first = OutputFolder::create(&target).unwrap();
        std::fs::write(first.path().join("a.txt"), "one").unwrap();
        assert_eq!(first.final_path(&first.path().join("a.txt")), target.join("a.txt"));
        first.commit().unwrap();
        std::fs::write(target.join("mine.csv"), "a person's file").unwrap();
        let second = OutputFolder::create(&target).unwrap();
        std::fs::write(second.path().join("a.txt"), "two").unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a.txt")).unwrap(), "one");
        second.commit().unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a.txt")).unwrap(), "two");
        assert_eq!(std::fs::read_to_string(target.join("mine.csv")).unwrap(), "a person's file");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["out"], "no temporary or aside folder is left");
        // Dropped without a commit, nothing changes and nothing is left.
        let third = OutputFolder::create(&target).unwrap();
        std::fs::write(third.path().join("a.txt"), "three").unwrap();
        drop(third);
        assert_eq!(std::fs::read_to_string(target.join("a.txt")).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_is_read_from_the_aside_copy_a_kill_left() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("model");
        assert_eq!(OutputFolder::current(&target), target);
        // As if killed between renaming the old model aside and the new one in.
        let aside = dir.path().join(".model.4000000.0123456789abcdef.old");
        std::fs::create_dir(&aside).unwrap();
        assert_eq!(
            OutputFolder::current(&target),
            target,
            "an aside folder without a card is ignored"
        );
        std::fs::write(aside.join(CARD_FILE), "{}").unwrap();
        assert_eq!(OutputFolder::current(&target), aside);
        let next = OutputFolder::create(&target).unwrap();
        next.commit().unwrap();
        assert_eq!(OutputFolder::current(&target), target);
        assert!(
            !aside.exists() || !cfg!(target_os = "linux"),
            "a dead run's aside folder is removed"
        );
    }
}
